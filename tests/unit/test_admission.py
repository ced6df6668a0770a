"""AdmissionPolicy: roots and symlinks, skipped directories, .gitignore, content, secrets, logging, walk."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from coderag_daemon.workspace import admission
from coderag_daemon.workspace.admission import AdmissionOptions, AdmissionPolicy

from .conftest import write


@pytest.fixture
def policy(root: Path) -> AdmissionPolicy:
    return AdmissionPolicy([root])


def reason(policy: AdmissionPolicy, path: Path) -> str | None:
    return policy.check(path).reason


# --- roots, symlinks, .. ---


def test_plain_file_inside_root_is_admitted(policy: AdmissionPolicy, root: Path) -> None:
    result = policy.check(write(root / "src" / "main.py"))
    assert result.admitted and result.reason is None and bool(result)


def test_file_outside_roots_is_refused(policy: AdmissionPolicy, root: Path) -> None:
    assert reason(policy, write(root.parent / "elsewhere.py")) == "outside the workspace roots"


def test_symlink_pointing_outside_is_refused(policy: AdmissionPolicy, root: Path) -> None:
    target = write(root.parent / "outside" / "notes.py")
    (root / "notes.py").symlink_to(target)
    assert reason(policy, root / "notes.py") == "outside the workspace roots"


def test_symlink_inside_root_is_admitted_but_checked_under_both_names(policy: AdmissionPolicy, root: Path) -> None:
    target = write(root / "config.txt")
    (root / "link.py").symlink_to(target)
    (root / ".env").symlink_to(target)
    assert policy.check(root / "link.py")
    assert reason(policy, root / ".env") == "secret-looking file name"


def test_the_given_path_alone_can_be_checked(policy: AdmissionPolicy, root: Path, tmp_path: Path) -> None:
    """For the watcher: a name in view that now points somewhere refused."""
    (root / "notes.py").symlink_to(write(tmp_path / "outside.py"))
    assert reason(policy, root / "notes.py") == "outside the workspace roots"
    assert policy.check_location(root / "notes.py", follow_symlinks=False)
    assert not policy.check_location(root / ".env", follow_symlinks=False)
    assert not policy.check_location(tmp_path / "outside.py", follow_symlinks=False)


def test_dotdot_is_resolved(policy: AdmissionPolicy, root: Path) -> None:
    write(root / "a.py")
    write(root.parent / "b.py")
    (root / "sub").mkdir()
    assert policy.check(root / "sub" / ".." / "a.py")
    assert reason(policy, root / "sub" / ".." / ".." / "b.py") == "outside the workspace roots"


def test_roots_can_be_added_and_removed(tmp_path: Path, root: Path) -> None:
    policy = AdmissionPolicy()
    file = write(root / "a.py")
    assert not policy.check(file)
    assert policy.add_root(root / ".") == root
    assert policy.roots == (root,) and policy.check(file)
    policy.remove_root(root)
    assert policy.roots == () and not policy.check(file)


# --- skipped directories ---


@pytest.mark.parametrize(
    "dirname",
    [".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", "target", "out",
     ".tox", ".mypy_cache", ".pytest_cache", "mypkg.egg-info"],
)  # fmt: skip
def test_skipped_directories(policy: AdmissionPolicy, root: Path, dirname: str) -> None:
    assert reason(policy, write(root / "pkg" / dirname / "deep" / "f.py")) == "skipped directory"
    assert policy.check_location(root / dirname, is_dir=True).reason == "skipped directory"


def test_a_file_named_like_a_skipped_directory_is_admitted(policy: AdmissionPolicy, root: Path) -> None:
    assert policy.check(write(root / "build"))


def test_nested_virtualenv_is_detected_by_pyvenv_cfg(policy: AdmissionPolicy, root: Path) -> None:
    write(root / "tools" / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")
    assert reason(policy, write(root / "tools" / "myenv" / "lib" / "site.py")) == "virtualenv"
    assert policy.check(write(root / "tools" / "script.py"))


# --- .gitignore ---


def test_gitignore_at_root(policy: AdmissionPolicy, root: Path) -> None:
    write(root / ".gitignore", "*.log\n/generated/\n")
    assert reason(policy, write(root / "sub" / "run.log")) == "gitignored"
    assert reason(policy, write(root / "generated" / "x.py")) == "gitignored"
    assert policy.check(write(root / "sub" / "generated" / "x.py"))  # anchored to the root
    assert policy.check(write(root / ".gitignore"))


def test_gitignore_in_subdirectory_applies_below_it_only(policy: AdmissionPolicy, root: Path) -> None:
    write(root / "pkg" / ".gitignore", "gen/\n/only.py\n")
    assert reason(policy, write(root / "pkg" / "gen" / "x.py")) == "gitignored"
    assert reason(policy, write(root / "pkg" / "only.py")) == "gitignored"
    assert policy.check(write(root / "pkg" / "deeper" / "only.py"))
    assert policy.check(write(root / "other" / "gen" / "x.py"))


def test_deeper_gitignore_overrides_parent(policy: AdmissionPolicy, root: Path) -> None:
    write(root / ".gitignore", "*.txt\n")
    write(root / "docs" / ".gitignore", "!keep.txt\n")
    assert policy.check(write(root / "docs" / "keep.txt"))
    assert reason(policy, write(root / "docs" / "other.txt")) == "gitignored"


def test_file_in_ignored_directory_cannot_be_reincluded(policy: AdmissionPolicy, root: Path) -> None:
    write(root / ".gitignore", "gen/\n!gen/keep.py\n")
    assert reason(policy, write(root / "gen" / "keep.py")) == "gitignored"


def test_invalidate_rereads_a_changed_gitignore(policy: AdmissionPolicy, root: Path) -> None:
    file = write(root / "pkg" / "a.tmp")
    assert policy.check(file)
    write(root / "pkg" / ".gitignore", "*.tmp\n")
    assert policy.check(file)  # rules are cached...
    policy.invalidate(root / "pkg" / ".gitignore")
    assert reason(policy, file) == "gitignored"  # ...until invalidated


def test_invalidate_a_moved_directory_drops_its_subtree(policy: AdmissionPolicy, root: Path) -> None:
    file = write(root / "pkg" / "sub" / "a.tmp")
    assert policy.check(file)
    write(root / "pkg" / "sub" / ".gitignore", "*.tmp\n")
    policy.invalidate(root / "pkg")
    assert not policy.check(file)


def test_gitignore_can_be_disabled_extra_globs_still_apply(root: Path) -> None:
    write(root / ".gitignore", "*.log\n")
    policy = AdmissionPolicy([root], AdmissionOptions(use_gitignore=False, ignore_globs=["*.min.js", "docs/"]))
    assert policy.check(write(root / "a.log"))
    assert reason(policy, write(root / "web" / "app.min.js")) == "matches ignore_globs"
    assert reason(policy, write(root / "docs" / "index.md")) == "matches ignore_globs"


# --- content ---


def test_binary_and_non_utf8_files_are_refused(policy: AdmissionPolicy, root: Path) -> None:
    assert reason(policy, write(root / "a.bin", b"abc\x00def")) == "binary (NUL byte)"
    assert reason(policy, write(root / "latin1.txt", b"caf\xe9\n")) == "not UTF-8"
    assert reason(policy, write(root / "cut.txt", b"caf\xc3")) == "not UTF-8"  # truncated at the end of file


def test_multibyte_character_cut_by_the_sniffed_head_is_fine(policy: AdmissionPolicy, root: Path) -> None:
    content = ("a" * (admission.HEAD_BYTES - 1) + "é" * 10).encode()
    assert policy.check(write(root / "long.txt", content))


def test_size_limit(root: Path) -> None:
    policy = AdmissionPolicy([root], AdmissionOptions(max_file_bytes=10))
    assert policy.check(write(root / "ten.py", "0123456789"))
    assert reason(policy, write(root / "eleven.py", "0123456789A")) == "too large (11 > 10 bytes)"
    assert AdmissionOptions().max_file_bytes == 512 * 1024


def test_special_files_are_refused(policy: AdmissionPolicy, root: Path) -> None:
    os.mkfifo(root / "pipe")
    assert reason(policy, root / "pipe") == "not a regular file"
    assert reason(policy, root) == "not a regular file"
    assert reason(policy, root / "missing.py").startswith("unreadable")


# --- secrets ---


@pytest.mark.parametrize(
    "name",
    [".env", ".env.local", "server.pem", "private.key", "id_rsa", "id_rsa.pub", "id_ed25519", "cert.p12",
     "cert.pfx", ".npmrc", ".pypirc", ".netrc", "credentials", "credentials.json", "my_secret.txt", "SECRETS.md",
     "Server.PEM", "id_ecdsa", "id_dsa", "id_ecdsa_sk", "id_github", "keystore.jks", "release.keystore",
     ".htpasswd", ".pgpass"],
)  # fmt: skip
def test_secret_looking_names_are_refused(policy: AdmissionPolicy, root: Path, name: str) -> None:
    assert reason(policy, write(root / "cfg" / name)) == "secret-looking file name"


PRIVATE_KEYS = {  # split so that this file itself is not taken for a key
    "deploy_key": "-----BEGIN OPENSSH" + " PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n",
    "private_key.txt": "-----BEGIN RSA" + " PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n",
    "signing.asc": "-----BEGIN PGP PRIVATE" + " KEY BLOCK-----\n\nlQOYBF\n",
    "service-account.json": '{"type": "service_account", "private_key_id": "3f2a",\n "private_key": "-----BEGIN'
    ' PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n"}\n',
}


@pytest.mark.parametrize("name", PRIVATE_KEYS)
def test_private_keys_are_refused_whatever_their_name(policy: AdmissionPolicy, root: Path, name: str) -> None:
    text = "# a key\n" * 100 + PRIVATE_KEYS[name]
    assert reason(policy, write(root / name, text)) == "contains a private key"
    assert policy.check_text(root / "buffer.txt", text).reason == "contains a private key"
    assert [p.name for p in policy.walk(root)] == []


def test_a_public_key_or_a_certificate_is_not_a_private_key(policy: AdmissionPolicy, root: Path) -> None:
    assert policy.check(write(root / "ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
    assert policy.check(write(root / "signing.asc", "-----BEGIN PGP PUBLIC" + " KEY BLOCK-----\n\nmQEN\n"))


@pytest.mark.parametrize("name", [".#auth.py", "#auth.py#", "auth.py~", ".auth.py.swp", ".auth.py.swo"])
def test_editor_lock_and_backup_files_are_refused(policy: AdmissionPolicy, root: Path, name: str) -> None:
    assert reason(policy, write(root / "src" / name)) == "editor lock or backup file"


@pytest.mark.parametrize(
    "name",
    [
        "env.py",
        "environment.md",
        "keyboard.py",
        "keys.py",
        "rsa.py",
        "creds.py",
        "id_utils.py",
        "keystore.py",
        "private_key.py",
    ],
)
def test_similar_innocent_names_are_admitted(policy: AdmissionPolicy, root: Path, name: str) -> None:
    assert policy.check(write(root / name))


# --- logging ---


def skip_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "coderag_daemon.workspace.admission"]


def test_each_skip_is_logged_once(policy: AdmissionPolicy, root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="coderag_daemon.workspace.admission")
    secret = write(root / ".env")
    for _ in range(3):
        policy.check(secret)
    for name in ("a.js", "b.js", "c.js"):  # refused because of the directory: logged once, for it
        policy.check(write(root / "node_modules" / name))
    assert skip_records(caplog) == [
        f"skipping {secret}: secret-looking file name",
        f"skipping {root / 'node_modules'}: skipped directory",
    ]
    write(root / ".env", b"\x00")
    assert not policy.check_content(secret)  # another reason for the same path is logged
    assert skip_records(caplog)[-1] == f"skipping {secret}: binary (NUL byte)"


def test_remembered_skips_are_bounded(
    policy: AdmissionPolicy, root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission, "MAX_LOGGED_SKIPS", 3)
    caplog.set_level(logging.DEBUG, logger="coderag_daemon.workspace.admission")
    for i in range(10):
        policy.check(write(root / f"k{i}.pem"))
    messages = skip_records(caplog)
    assert len(messages) == 4
    assert messages[-1] == "more than 3 paths skipped; further skips are not logged"
    assert len(policy._logged) == 4


# --- walk ---


def make_tree(root: Path) -> None:
    write(root / ".gitignore", "*.log\n")
    for rel in ["b.py", "a.py", "src/z.py", "src/m/n.py", "debug.log", ".env", "node_modules/x/index.js",
                ".git/config", "venvy/pyvenv.cfg", "venvy/lib/site.py", "src/__pycache__/z.pyc"]:  # fmt: skip
        write(root / rel)
    write(root / "img.png", b"\x89PNG\x00\x00")


def test_walk_yields_admitted_files_in_order(policy: AdmissionPolicy, root: Path) -> None:
    make_tree(root)
    assert [p.relative_to(root).as_posix() for p in policy.walk(root)] == [
        ".gitignore", "a.py", "b.py", "src/z.py", "src/m/n.py",
    ]  # fmt: skip


def test_walk_prunes_skipped_directories(policy: AdmissionPolicy, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(root)
    listed = []
    real_scandir = os.scandir

    def spy(path):
        listed.append(Path(path).relative_to(root).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(admission.os, "scandir", spy)
    list(policy.walk(root))
    assert sorted(listed) == [".", "src", "src/m"]


def test_walk_of_a_subdirectory_and_of_a_skipped_one(policy: AdmissionPolicy, root: Path) -> None:
    make_tree(root)
    assert [p.name for p in policy.walk(root / "src")] == ["z.py", "n.py"]
    assert list(policy.walk(root / "node_modules")) == []
    assert list(policy.walk(root.parent)) == []


def test_walk_stops_at_max_files(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(10):
        write(root / f"f{i}.py")
    policy = AdmissionPolicy([root], AdmissionOptions(max_walk_files=3))
    caplog.set_level(logging.WARNING, logger="coderag_daemon.workspace.admission")
    assert [p.name for p in policy.walk(root)] == ["f0.py", "f1.py", "f2.py"]
    assert len(skip_records(caplog)) == 1 and "after 3 files" in skip_records(caplog)[0]


def test_walk_exactly_max_files_does_not_warn(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        write(root / f"f{i}.py")
    caplog.set_level(logging.WARNING, logger="coderag_daemon.workspace.admission")
    assert len(list(AdmissionPolicy([root], AdmissionOptions(max_walk_files=3)).walk(root))) == 3
    assert skip_records(caplog) == []


def test_walk_does_not_follow_symlinked_directories(policy: AdmissionPolicy, root: Path) -> None:
    write(root / "real" / "a.py")
    write(root.parent / "outside" / "o.py")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "out_link.py").symlink_to(root.parent / "outside" / "o.py")
    (root / "in_link.py").symlink_to(root / "real" / "a.py")
    assert [p.relative_to(root).as_posix() for p in policy.walk(root)] == ["in_link.py", "real/a.py"]


def test_editor_text_content_rules_are_logged_once(
    policy: AdmissionPolicy, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = root / "big.py"
    policy.options.max_file_bytes = 10
    assert policy.check_text(path, "x = 1\n")
    with caplog.at_level(logging.INFO, logger="coderag_daemon.workspace.admission"):
        for _ in range(5):  # every keystroke checks again; the log says it once
            assert policy.check_text(path, "x = 'é' * 100\n").reason.startswith("too large")
        assert policy.check_text(root / "bin.py", "a\0b").reason == "binary (NUL byte)"
    assert sum("big.py" in r.getMessage() for r in caplog.records) == 1
    assert not policy.check_text(path, "é" * 6)  # 6 characters, 12 bytes: bytes count


def test_display_paths_are_relative_to_the_innermost_root(tmp_path: Path) -> None:
    outer, other = (tmp_path / "outer").resolve(), (tmp_path / "other").resolve()
    inner = outer / "vendor" / "lib"
    for d in (inner, other):
        d.mkdir(parents=True)
    assert AdmissionPolicy([outer]).display_path(outer / "pkg" / "a.py") == "pkg/a.py"
    both = AdmissionPolicy([outer, inner, other])
    assert both.display_path(inner / "b.py") == "lib/b.py"
    assert both.display_path(other / "c.py") == "other/c.py"
    assert both.display_path(tmp_path / "elsewhere.py") == str(tmp_path / "elsewhere.py")
