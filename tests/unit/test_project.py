"""Files moved or deleted on disk keep or leave their place in the context; files that stop being
admissible (new rules, a symlink out of the roots, a binary or oversize text) leave it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coderag_daemon.engine import Model
from coderag_daemon.options import Options
from coderag_daemon.prompting.prompts import PromptOptions, detect_layout
from coderag_daemon.workspace.documents import TextChange, path_to_uri
from coderag_daemon.workspace.project import Project
from fixtures.tiny_models import tiny_model_path

from .conftest import write


def project_with(root: Path, names: list[str], options: Options | None = None) -> Project:
    project = Project(options or Options())
    project.set_roots([root])
    project.set_layout(detect_layout(Model(tiny_model_path("dense"))))
    for name in names:
        path = write(root / name, f"# {name}\n")
        uri = path_to_uri(path)
        project.opened(uri, path.read_text(), 1, "python")
        project.closed(uri)  # now read from disk, still in the context
    return project


def paths(project: Project) -> list[str]:
    project.segments()
    return [f["path"] for f in project.describe(0)]


def test_a_moved_directory_keeps_its_files_places(root: Path) -> None:
    project = project_with(root, ["a.py", "pkg/b.py", "pkg/c.py", "d.py"])
    (root / "pkg").rename(root / "lib")
    project.disk_moved(str(root / "pkg"), str(root / "lib"))
    assert paths(project) == ["a.py", "lib/b.py", "lib/c.py", "d.py"]
    assert [f["uri"] for f in project.describe(0)][1] == path_to_uri(root / "lib" / "b.py")


def test_a_move_into_an_ignored_place_leaves(root: Path) -> None:
    project = project_with(root, ["a.py", "b.py"])
    (root / "node_modules").mkdir()
    (root / "b.py").rename(root / "node_modules" / "b.py")
    project.disk_moved(str(root / "b.py"), str(root / "node_modules" / "b.py"))
    assert paths(project) == ["a.py"]


def test_a_deleted_directory_leaves(root: Path) -> None:
    project = project_with(root, ["a.py", "pkg/b.py", "pkgx.py"])
    project.disk_deleted(str(root / "pkg"))
    assert paths(project) == ["a.py", "pkgx.py"]  # a sibling sharing the name's prefix stays


def test_disk_events_say_whether_the_context_changed(root: Path) -> None:
    """The daemon refreshes the cache after the ones that did, and only after those."""
    project = project_with(root, ["a.py", "b.py"])
    other = write(root / "notes.py", "# not in the context\n")
    assert project.disk_changed(str(other)) is False
    assert project.disk_changed(str(root / "a.py")) is False  # touched, same text
    write(root / "a.py", "# a.py, rewritten by a formatter\n")
    assert project.disk_changed(str(root / "a.py")) is True
    uri = path_to_uri(root / "b.py")
    project.opened(uri, "# b.py in the editor\n", 2, "python")
    write(root / "b.py", "# b.py changed on disk\n")
    assert project.disk_changed(str(root / "b.py")) is False  # the editor's buffer wins
    assert project.disk_deleted(str(other)) is False
    assert project.disk_moved(str(root / "a.py"), str(root / "c.py")) is True
    assert project.disk_deleted(str(root / "c.py")) is True
    assert paths(project) == ["b.py"]


def test_the_file_context_leaves_room_for_a_request_in_n_ctx(root: Path) -> None:
    model = Model(tiny_model_path("dense"))
    for n_ctx, context_tokens in ((4096, 8000), (8192, 6144), (65536, 6144)):
        options = Options(n_ctx=n_ctx, context_tokens=context_tokens)
        layout = detect_layout(model, PromptOptions.for_context(n_ctx))
        project = Project(options)
        project.set_roots([root])
        project.set_layout(layout)
        assert project.files.layout is not None
        budget = project.files.layout.options.token_budget
        request = layout.options.request_tokens(options.max_completion_tokens, options.max_chat_tokens)
        assert budget + request <= n_ctx
        assert budget == min(context_tokens, n_ctx - request)


def test_a_file_the_budget_evicted_stays_out_until_it_is_opened_again(root: Path) -> None:
    """Eviction takes the file out of the one order: it is no longer held, its disk copy goes, and
    neither an edit of another file nor a new budget brings it back; opened again, it is the latest."""
    body = "".join(f"value_{i} = {i}\n" for i in range(10))  # about 76 tokens a file
    project = project_with(root, [], Options(context_tokens=256))
    uris = {name: path_to_uri(write(root / name, body)) for name in ("a.py", "b.py", "c.py", "d.py")}
    for name, uri in uris.items():
        project.opened(uri, body, 1, "python")
        if name != "a.py":
            project.closed(uri)  # a.py stays open in the editor
    assert paths(project) == ["c.py", "d.py"]  # 4 x 76 > 256: down to the low-water mark, 192
    a = project.documents.get(uris["a.py"])
    assert a is not None and not project.holds(a)
    assert project.context_paths() == {str(root / "c.py"), str(root / "d.py")}
    assert project.documents.get(uris["b.py"]) is None  # the disk copy left with it
    project.changed(reopen(project, root / "d.py"), 3, [TextChange(body + "x = 1\n")])
    assert paths(project) == ["c.py", "d.py"]
    project.reconfigure(Options(context_tokens=1024))  # room for all four now
    assert paths(project) == ["c.py", "d.py"]
    project.closed(uris["a.py"])
    a = project.opened(uris["a.py"], body, 3, "python")
    assert project.holds(a) and paths(project) == ["c.py", "d.py", "a.py"]  # back as the latest file


# --- files that stop being admissible leave the context --------------------------------------------


def reopen(project: Project, path: Path, version: int = 2) -> str:
    uri = path_to_uri(path)
    project.opened(uri, path.read_text(), version, "python")
    return uri


def holds_text(project: Project, needle: str) -> bool:
    return any(needle in doc.text for doc in project.documents)


def test_closing_a_file_replaced_by_a_symlink_out_of_the_roots_does_not_read_it(root: Path, tmp_path: Path) -> None:
    project = project_with(root, ["a.py", "config.py", "b.py"])
    uri = reopen(project, root / "config.py")
    outside = write(tmp_path / "outside.txt", "SECRET = 'outside the roots'\n")
    (root / "config.py").unlink()
    (root / "config.py").symlink_to(outside)
    project.closed(uri)
    assert paths(project) == ["a.py", "b.py"]
    assert not holds_text(project, "outside the roots")


def test_closing_a_file_that_became_too_large_or_binary_leaves_it_out(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    project = project_with(root, ["a.py", "config.py", "models.py"], Options(max_file_kib=1))
    uris = [reopen(project, root / name) for name in ("config.py", "models.py")]
    write(root / "config.py", "HUGE = 1\n" * 1000)  # 9 KB > 1 KiB
    write(root / "models.py", b"x = 1\n" + b"\0" * 20 + b"\n")
    read = []
    load = project.documents.load_from_disk
    monkeypatch.setattr(
        project.documents,
        "load_from_disk",
        lambda path, *args, **kwargs: read.append(Path(path).name) or load(path, *args, **kwargs),
    )
    with caplog.at_level(logging.INFO, logger="coderag_daemon.workspace.admission"):
        for uri in uris:
            project.closed(uri)
    assert paths(project) == ["a.py"]
    assert read == []  # refused before reading: size from stat, NUL in the sniffed head
    assert not holds_text(project, "HUGE") and not holds_text(project, "\0")
    reasons = [r.getMessage().split(": ")[1] for r in caplog.records]
    assert reasons == ["too large (9000 > 1024 bytes)", "binary (NUL byte)"]


def test_a_context_file_changed_on_disk_is_read_again_through_the_rules(root: Path, tmp_path: Path) -> None:
    project = project_with(root, ["a.py", "b.py", "c.py", "d.py"], Options(max_file_kib=1))
    write(root / "a.py", "A = 1\n" * 1000)
    write(root / "b.py", b"B = 1\n\0\n")
    (root / "c.py").unlink()
    (root / "c.py").symlink_to(write(tmp_path / "outside.py", "OUTSIDE = 1\n"))
    for name in ("a.py", "b.py", "c.py"):
        assert project.disk_changed(str(root / name)) is True
    assert paths(project) == ["d.py"]
    assert not any(holds_text(project, text) for text in ("A = 1", "B = 1", "OUTSIDE"))


def test_a_saved_text_is_held_to_the_rules_of_an_edit(root: Path) -> None:
    project = project_with(root, ["a.py", "b.py", "c.py"], Options(max_file_kib=1))
    uri = reopen(project, root / "b.py")
    project.saved(uri, "BIN = 1\n" + "\0" * 50 + "\n")
    assert paths(project) == ["a.py", "c.py"]
    project.saved(uri, "# b.py\n")
    assert paths(project) == ["a.py", "c.py", "b.py"]  # admissible again: back, as the latest file
    project.saved(uri, "y = 2\n" * 1000)
    assert paths(project) == ["a.py", "c.py"]


def test_an_edit_that_makes_a_buffer_unadmissible_takes_it_out_until_an_admissible_one(root: Path) -> None:
    """The context never holds text the editor no longer has."""
    project = project_with(root, ["a.py", "b.py", "c.py"], Options(max_file_kib=1))
    uri = reopen(project, root / "b.py")
    project.changed(uri, 3, [TextChange("x = 1\n\0\n")])
    assert paths(project) == ["a.py", "c.py"]
    project.changed(uri, 4, [TextChange("x = 1\n" * 1000)])
    assert paths(project) == ["a.py", "c.py"]
    project.changed(uri, 5, [TextChange("x = 1\n")])
    assert paths(project) == ["a.py", "c.py", "b.py"]


def test_files_a_new_gitignore_lists_leave_the_context(root: Path) -> None:
    project = project_with(root, ["a.py", "b.py", "pkg/c.py", "d.py"])
    write(root / ".gitignore", "b.py\npkg/\n")
    assert project.disk_changed(str(root / ".gitignore")) is True
    assert paths(project) == ["a.py", "d.py"]
    write(root / "b.py", "# b.py, changed\n")
    assert project.disk_changed(str(root / "b.py")) is False
    assert not holds_text(project, "# b.py")


def test_a_context_file_replaced_by_a_symlink_out_of_the_roots_leaves(root: Path, tmp_path: Path) -> None:
    """The watcher reports such a file as deleted; an open buffer there leaves too: its path is refused now."""
    project = project_with(root, ["a.py", "b.py", "c.py", "d.py"])
    reopen(project, root / "c.py")
    outside = write(tmp_path / "outside.py", "OUTSIDE = 1\n")
    for name in ("b.py", "c.py"):
        (root / name).unlink()
        (root / name).symlink_to(outside)
        assert project.disk_deleted(str(root / name)) is True
    assert paths(project) == ["a.py", "d.py"]


def test_files_that_new_settings_refuse_leave_the_context(root: Path) -> None:
    project = project_with(root, ["a.py", "b.py", "c.py", "d.py"])
    write(root / "c.py", "C = 1\n" * 1000)
    assert project.disk_changed(str(root / "c.py")) is True  # 6 KB, within the default limit
    project.reconfigure(Options(ignore_globs=["b.py"], max_file_kib=1))
    assert paths(project) == ["a.py", "d.py"]


def test_files_of_a_removed_workspace_folder_leave_the_context(tmp_path: Path) -> None:
    first, second = (write(tmp_path / name / "x.py").parent.resolve() for name in ("one", "two"))
    project = Project(Options())
    project.set_roots([first, second])
    project.set_layout(detect_layout(Model(tiny_model_path("dense"))))
    for path in (first / "a.py", second / "b.py", first / "c.py"):
        uri = path_to_uri(write(path, f"# {path.name}\n"))
        project.opened(uri, path.read_text(), 1, "python")
    project.closed(path_to_uri(first / "a.py"))
    project.set_roots([first])
    assert paths(project) == ["a.py", "c.py"]
