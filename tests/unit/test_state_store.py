"""The on-disk store of saved cache states: round trips, generations, the budget, every kind of bad file, crashes
and concurrent writers, permissions, and the `cache` command."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon import cli
from coderag_daemon.persistence import PersistenceUnavailable, SavedState, StateFileError, StateStore, state_file
from coderag_daemon.persistence.cache_command import format_list
from coderag_daemon.persistence.state_store import WORKSPACE_FILE, workspace_id, workspace_roots

REPO = Path(__file__).resolve().parents[2]
KEY: dict[str, Any] = {"model_sha256": "ab" * 32, "n_ctx": 4096, "llama_cpp": "0.3.36"}


def meta(*files: tuple[str, str], tokens: int = 100) -> dict[str, Any]:
    return {"roots": ["/ws"], "files": [list(f) for f in files], "tokens": tokens}


def payload(n: int = 1 << 16, seed: int = 1) -> bytes:
    pattern = bytes((i * seed + seed) % 251 for i in range(251))
    return (pattern * (n // 251 + 1))[:n]


def state_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*.state"))


def lines_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "states")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="coderag_daemon.persistence")


def test_round_trip(store: StateStore, ws: Path) -> None:
    data = payload(3 * state_file.CHUNK_BYTES // 2)  # more than one write slice
    saved = store.save([ws, ws / "."], KEY, meta(("/ws/a.py", "1")), data)

    assert saved.roots == (str(ws.resolve()),)
    assert saved.workspace == workspace_id(saved.roots) == saved.path.parent.name
    assert saved.key == KEY and saved.meta == meta(("/ws/a.py", "1"))
    assert saved.size == saved.path.stat().st_size > len(data)
    assert store.candidates([ws], dict(KEY)) == [saved]
    assert store.load(saved) == data
    assert store.list() == [saved]
    assert json.loads((saved.path.parent / WORKSPACE_FILE).read_text()) == {"roots": [str(ws.resolve())]}


def test_empty_or_missing_directory_has_no_states(store: StateStore, ws: Path) -> None:
    assert store.candidates([ws], KEY) == [] and store.list() == [] and store.clear() == 0
    assert not store.directory.exists()


def test_default_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODERAG_STATE_DIR", str(tmp_path / "elsewhere"))
    assert StateStore().directory == tmp_path / "elsewhere"
    monkeypatch.delenv("CODERAG_STATE_DIR")
    assert StateStore().directory.name == "states"


def test_generations_keep_distinct_states_and_replace_the_same_files(store: StateStore, ws: Path) -> None:
    branch_a = meta(("/ws/a.py", "1"), ("/ws/b.py", "2"))
    first = store.save([ws], KEY, branch_a, payload(seed=1))
    branch_b = store.save([ws], KEY, meta(("/ws/a.py", "3"), ("/ws/b.py", "2")), payload(seed=2))
    # the same files in another order and with more tokens: the same generation, replaced
    again = store.save([ws], KEY, meta(("/ws/b.py", "2"), ("/ws/a.py", "1"), tokens=150), payload(seed=3))
    assert again.path == first.path
    assert store.candidates([ws], KEY) == [again, branch_b]
    assert store.load(again) == payload(seed=3)

    later = [store.save([ws], KEY, meta(("/ws/a.py", str(n))), payload(seed=n)) for n in (4, 5)]
    assert store.candidates([ws], KEY) == [*reversed(later), again]  # keep=3: branch_b, the oldest, went
    assert len(state_files(store.directory)) == 3


def test_another_key_is_another_generation(store: StateStore, ws: Path) -> None:
    files = meta(("/ws/a.py", "1"))
    mine = store.save([ws], KEY, files, payload(seed=1))
    theirs = store.save([ws], {**KEY, "n_ctx": 8192}, files, payload(seed=2))
    assert store.candidates([ws], KEY) == [mine]
    assert store.candidates([ws], theirs.key) == [theirs]


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_budget_removes_the_least_recently_used_workspace_first(tmp_path: Path) -> None:
    roots = [tmp_path / name for name in ("a", "b", "c")]
    for root in roots:
        root.mkdir()
    size = 1 << 16
    store = StateStore(tmp_path / "states", budget_bytes=int(3.5 * size), keep=3)
    a1 = store.save([roots[0]], KEY, meta(("a", "1")), payload(size))
    a2 = store.save([roots[0]], KEY, meta(("a", "2")), payload(size))
    b1 = store.save([roots[1]], KEY, meta(("b", "1")), payload(size))
    for state, age in ((a1, 300), (a2, 200), (b1, 100)):
        _age(state.path, age)
    _age(a1.path.parent / WORKSPACE_FILE, 100)
    _age(b1.path.parent / WORKSPACE_FILE, 50)
    assert store.candidates([roots[0]], KEY) == [a2, a1]  # a is now the most recently used workspace

    c1 = store.save([roots[2]], KEY, meta(("c", "1")), payload(size))

    assert {s.path for s in store.list()} == {a1.path, a2.path, c1.path}  # b went, and its directory
    assert not b1.path.parent.exists()
    c2 = store.save([roots[2]], KEY, meta(("c", "2")), payload(size))
    assert {s.path for s in store.list()} == {a2.path, c1.path, c2.path}  # then a's oldest generation


def test_budget_never_removes_the_state_just_written(tmp_path: Path, ws: Path) -> None:
    store = StateStore(tmp_path / "states", budget_bytes=1000)
    store.save([ws], KEY, meta(("a", "1")), payload(5000))
    big = store.save([ws], KEY, meta(("a", "2")), payload(5000))
    assert store.list() == [big]


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped payload byte":
        data[len(data) // 2] ^= 0x01
    elif how == "flipped header byte":
        data[20] ^= 0x01  # the header's first name: "workspace" becomes "woskspace"
    elif how == "flipped digest byte":
        data[-1] ^= 0x01
    elif how == "truncated":
        data = data[: len(data) - 100]
    elif how == "extended":
        data += b"\0"
    elif how == "zero length":
        data = bytearray()
    elif how == "wrong magic":
        data[:8] = b"NOTSTATE"
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["flipped header byte", "truncated", "extended", "zero length", "wrong magic"])
def test_a_damaged_header_or_length_is_refused_once_and_removed(
    store: StateStore, ws: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = store.save([ws], KEY, meta(("a", "1")), payload(seed=1))
    bad = store.save([ws], KEY, meta(("a", "2")), payload(seed=2))
    _damage(bad.path, how)

    assert store.candidates([ws], KEY) == [good]
    assert store.candidates([ws], KEY) == [good]
    assert not bad.path.exists()
    assert len(lines_about(caplog, bad.path)) == 1
    assert store.load(good) == payload(seed=1)


@pytest.mark.parametrize("how", ["flipped payload byte", "flipped digest byte"])
def test_a_damaged_payload_is_refused_on_load_and_removed(
    store: StateStore, ws: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = store.save([ws], KEY, meta(("a", "1")), payload())
    _damage(bad.path, how)
    [listed] = store.candidates([ws], KEY)

    with pytest.raises(StateFileError, match="checksum"):
        store.load(listed)
    assert not bad.path.exists()
    assert len(lines_about(caplog, bad.path)) == 1
    assert store.candidates([ws], KEY) == []


def test_another_format_is_not_used_nor_removed(store: StateStore, ws: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = store.save([ws], KEY, meta(("a", "1")), payload())
    data = bytearray(other.path.read_bytes())
    data[8:12] = (state_file.FORMAT + 1).to_bytes(4, "little")
    other.path.write_bytes(data)

    assert store.candidates([ws], KEY) == [] and store.candidates([ws], KEY) == [] and store.list() == []
    assert other.path.exists()
    assert len(lines_about(caplog, other.path)) == 1


def test_another_key_is_not_used_and_logged_once(store: StateStore, ws: Path, caplog: pytest.LogCaptureFixture) -> None:
    theirs = store.save([ws], {**KEY, "model_sha256": "cd" * 32}, meta(("a", "1")), payload())
    assert store.candidates([ws], KEY) == [] and store.candidates([ws], KEY) == []
    assert theirs.path.exists()
    assert len(lines_about(caplog, theirs.path)) == 1


def test_another_workspaces_file_copied_in_is_removed(
    store: StateStore, tmp_path: Path, ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "other").mkdir()
    mine = store.save([ws], KEY, meta(("a", "1")), payload(seed=1))
    theirs = store.save([tmp_path / "other"], KEY, meta(("b", "1")), payload(seed=2))
    copied = mine.path.parent / "00000000-0000000000000000.state"
    copied.write_bytes(theirs.path.read_bytes())

    assert store.candidates([ws], KEY) == [mine]
    assert not copied.exists() and theirs.path.exists()
    assert len(lines_about(caplog, copied)) == 1


def test_a_symlinked_state_file_is_not_followed(
    store: StateStore, tmp_path: Path, ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = store.save([ws], KEY, meta(("a", "1")), payload())
    outside = tmp_path / "outside.state"
    saved.path.rename(outside)
    saved.path.symlink_to(outside)

    assert store.candidates([ws], KEY) == []
    assert not saved.path.is_symlink() and outside.exists()  # the link went, not what it pointed to
    assert len(lines_about(caplog, saved.path)) == 1


def test_a_state_file_swapped_for_a_symlink_after_listing_is_not_followed(
    store: StateStore, tmp_path: Path, ws: Path
) -> None:
    saved = store.save([ws], KEY, meta(("a", "1")), payload())
    [listed] = store.candidates([ws], KEY)
    outside = tmp_path / "outside.state"
    saved.path.rename(outside)
    saved.path.symlink_to(outside)
    with pytest.raises(StateFileError, match="symbolic link"):
        store.load(listed)
    assert outside.exists() and not saved.path.is_symlink()


def test_a_symlinked_workspace_directory_is_not_followed(
    store: StateStore, tmp_path: Path, ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = store.save([ws], KEY, meta(("a", "1")), payload())
    elsewhere = tmp_path / "elsewhere"
    saved.path.parent.rename(elsewhere)
    saved.path.parent.symlink_to(elsewhere, target_is_directory=True)

    assert store.candidates([ws], KEY) == [] and store.list() == []
    assert not saved.path.parent.is_symlink() and (elsewhere / saved.path.name).exists()
    assert len(lines_about(caplog, saved.path.parent)) == 1
    again = store.save([ws], KEY, meta(("a", "1")), payload())  # a real directory again
    assert stat.S_ISDIR(os.lstat(again.path.parent).st_mode) and store.candidates([ws], KEY) == [again]


def test_a_state_replaced_since_listing_is_refused_but_kept(store: StateStore, ws: Path) -> None:
    files = meta(("a", "1"))
    listed = store.save([ws], KEY, files, payload(seed=1))
    newer = store.save([ws], KEY, {**files, "tokens": 7}, payload(seed=2))
    with pytest.raises(StateFileError, match="replaced"):
        store.load(listed)
    assert store.load(newer) == payload(seed=2)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_partial_temporary_file_is_ignored_then_removed_when_stale(store: StateStore, ws: Path) -> None:
    previous = store.save([ws], KEY, meta(("a", "1")), payload(seed=1))
    ws_dir = previous.path.parent
    stale = ws_dir / f"tmp-{_dead_pid()}-0123456789ab.part"
    fresh = ws_dir / f"tmp-{_dead_pid()}-ba9876543210.part"
    alive = ws_dir / f"tmp-{os.getpid()}-aaaaaaaaaaaa.part"
    for partial in (stale, fresh, alive):
        partial.write_bytes(previous.path.read_bytes()[:1000])
    _age(stale, 120)
    _age(alive, 120)

    assert store.candidates([ws], KEY) == [previous]
    assert store.load(previous) == payload(seed=1)
    store.save([ws], KEY, meta(("a", "2")), payload(seed=2))
    assert not stale.exists() and fresh.exists() and alive.exists()


_SLOW_WRITER = """
import sys
from pathlib import Path
from coderag_daemon.persistence import StateStore, state_file
state_file.CHUNK_BYTES = 1 << 20
write_all = state_file._write_all
def slow_write_all(fd, chunk):
    written = write_all(fd, chunk)
    print("writing", flush=True)
    import time; time.sleep(0.05)
    return written
state_file._write_all = slow_write_all
key, files = {key!r}, {files!r}
StateStore(Path(sys.argv[1])).save([Path(sys.argv[2])], key, files, bytes(64 << 20))
print("done", flush=True)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_state(store: StateStore, ws: Path) -> None:
    files = meta(("a", "1"))
    previous = store.save([ws], KEY, files, payload(seed=1))
    writer = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER.format(key=KEY, files=files), str(store.directory), str(ws)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    for _ in range(3):  # a few slices of the same generation are on disk
        assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    [partial] = previous.path.parent.glob("tmp-*.part")
    assert 0 < partial.stat().st_size < 64 << 20

    assert store.candidates([ws], KEY) == [previous]
    assert store.load(previous) == payload(seed=1)
    _age(partial, 120)
    store.save([ws], KEY, meta(("a", "2")), payload(seed=2))
    assert not partial.exists()


def test_an_unwritable_directory_makes_persistence_unavailable(tmp_path: Path, ws: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories; the next test simulates it")
    store = StateStore(tmp_path / "states")
    previous = store.save([ws], KEY, meta(("a", "1")), payload())
    previous.path.parent.chmod(0o500)
    try:
        with pytest.raises(PersistenceUnavailable, match="Permission denied"):
            store.save([ws], KEY, meta(("a", "2")), payload())
    finally:
        previous.path.parent.chmod(0o700)
    assert store.candidates([ws], KEY) == [previous]


@pytest.mark.parametrize("failure", [errno.EROFS, errno.ENOSPC])
def test_a_read_only_or_full_disk_makes_persistence_unavailable(
    store: StateStore, ws: Path, monkeypatch: pytest.MonkeyPatch, failure: int
) -> None:
    previous = store.save([ws], KEY, meta(("a", "1")), payload(seed=1))
    real_open, real_write = os.open, os.write

    def read_only_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def full_disk_write(fd: int, data: Any) -> int:
        if len(data) == 1 << 15:  # a slice of the payload, after the header
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(state_file, "CHUNK_BYTES", 1 << 15)
        if failure == errno.EROFS:
            patch.setattr(os, "open", read_only_open)
        else:
            patch.setattr(os, "write", full_disk_write)
        with pytest.raises(PersistenceUnavailable, match=os.strerror(failure)) as raised:
            store.save([ws], KEY, meta(("a", "1"), tokens=5), payload(seed=2))
    assert isinstance(raised.value, OSError) and str(store.directory) in str(raised.value)
    assert not list(previous.path.parent.glob("tmp-*"))
    assert store.candidates([ws], KEY) == [previous] and store.load(previous) == payload(seed=1)


def _save_repeatedly(directory: str, root: str, writer: int, start: Any) -> None:
    store = StateStore(Path(directory))
    data = [payload(4 << 20, seed=10 * writer + n) for n in (0, 1)]
    start.wait()
    for n in range(6):
        store.save([Path(root)], KEY, meta(("a", str(n % 2)), tokens=writer), data[n % 2])


def test_two_processes_saving_one_workspace_end_with_loadable_states(store: StateStore, ws: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=_save_repeatedly, args=(str(store.directory), str(ws), w, start)) for w in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0

    states = store.candidates([ws], KEY)
    assert states
    for state in states:
        writer, n = state.meta["tokens"], int(state.meta["files"][0][1])
        assert store.load(state) == payload(4 << 20, seed=10 * writer + n)
    assert not list(store.directory.glob("*/tmp-*"))


def test_permissions_are_private(tmp_path: Path, ws: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        store = StateStore(tmp_path / "cache" / "states")
        saved = store.save([ws], KEY, meta(("a", "1")), payload())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(saved.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((saved.path.parent / WORKSPACE_FILE).stat().st_mode) == 0o600


def test_clear_one_workspace_or_all(store: StateStore, tmp_path: Path, ws: Path) -> None:
    (tmp_path / "other").mkdir()
    store.save([ws], KEY, meta(("a", "1")), payload())
    store.save([ws], KEY, meta(("a", "2")), payload())
    theirs = store.save([tmp_path / "other"], KEY, meta(("b", "1")), payload())
    assert store.clear([ws]) == 2
    assert store.list() == [theirs]
    assert store.clear() == 1
    assert store.list() == [] and list(store.directory.iterdir()) == []


def test_format_list() -> None:
    def state(roots: tuple[str, ...], tokens: int, size: int, created: float) -> SavedState:
        return SavedState(Path("/x"), "w", KEY, {"tokens": tokens}, size, created, roots)

    text = format_list(
        [state(("/home/u/p",), 4096, 123_400_000, 1000.0 - 7200), state(("/a", "/b"), 512, 2_500_000_000, 990.0)],
        Path("/cache/states"),
        now=1000.0,
    )
    assert text.splitlines() == [
        "/home/u/p  model abababababab  4,096 tokens  123.4 MB  2 h ago",
        "/a, /b  model abababababab  512 tokens  2.50 GB  just now",
        "2 saved states, 2.62 GB, in /cache/states",
    ]


@pytest.fixture
def _daemon_log_level() -> Any:
    """cli.main sets the daemon's log level; later tests get it back."""
    daemon = logging.getLogger("coderag_daemon")
    level = daemon.level
    yield
    daemon.setLevel(level)


@pytest.mark.usefixtures("_daemon_log_level")
def test_cache_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, ws: Path
) -> None:
    monkeypatch.setenv("CODERAG_STATE_DIR", str(tmp_path / "states"))
    (tmp_path / "other").mkdir()
    store = StateStore()
    store.save([ws], KEY, meta(("a", "1"), tokens=1234), payload(1 << 20))
    store.save([ws, tmp_path / "other"], KEY, meta(("a", "1")), payload())
    store.save([tmp_path / "other"], KEY, meta(("b", "1")), payload())

    assert cli.main(["cache", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4 and listed[-1] == f"3 saved states, 1.2 MB, in {tmp_path / 'states'}"
    assert any(
        line.startswith(f"{ws.resolve()}  model abababababab  1,234 tokens  1.0 MB  just now") for line in listed
    )

    assert cli.main(["cache", "clear", "--workspace", str(ws)]) == 0  # its own and the two-root workspace's
    assert capsys.readouterr().out == f"removed 2 saved states from {tmp_path / 'states'}\n"
    assert [s.roots for s in store.list()] == [workspace_roots([tmp_path / "other"])]
    assert cli.main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"removed 1 saved state from {tmp_path / 'states'}\n"
    cli.main(["cache", "list"])
    assert capsys.readouterr().out == f"0 saved states, 0.0 MB, in {tmp_path / 'states'}\n"
