"""Files moved or deleted on disk keep or leave their place in the context."""

from __future__ import annotations

from pathlib import Path

from coderag_daemon.documents import path_to_uri
from coderag_daemon.engine import Model
from coderag_daemon.options import Options
from coderag_daemon.project import Project
from coderag_daemon.prompts import PromptOptions, detect_layout
from fixtures.tiny_models import tiny_model_path

from .conftest import write


def project_with(root: Path, names: list[str]) -> Project:
    project = Project(Options())
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
        budget = project.context.options.token_budget
        assert budget + layout.options.request_tokens(options.max_completion_tokens, options.max_chat_tokens) <= n_ctx
        assert budget == min(context_tokens, n_ctx - layout.options.request_tokens(options.max_completion_tokens, options.max_chat_tokens))
