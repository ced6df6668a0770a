"""Moving the cursor a few lines, in the request qwen-repo sends (the suffix before the lines
nearest the cursor), reprocesses the suffix and those lines, not the cursor window above them."""

from __future__ import annotations

from coderag_daemon.engine import ContextCache, Model
from coderag_daemon.prompting.completion import cursor_window
from coderag_daemon.prompting.prompts import detect_layout
from fixtures.tiny_models import tiny_model_path

from .conftest import options


def test_a_cursor_move_among_the_near_lines_keeps_the_window_above_them(source_texts: list[str]) -> None:
    model = Model(tiny_model_path("dense"))
    layout = detect_layout(model)
    assert layout.family == "qwen-repo" and layout.options.suffix_first
    edited, other = source_texts[2], source_texts[0]  # textwrap.py, json/decoder.py
    files = [layout.head("lib"), layout.file_segment("json/decoder.py", other)[:600]]
    lines = edited.split("\n")
    assert len(lines) > 200

    def request(line: int, column: int) -> tuple[list[int], int]:
        offset = sum(len(s) + 1 for s in lines[:line]) + column
        window = cursor_window(edited, offset)
        tail = layout.completion_tail("textwrap.py", window.prefix, window.suffix, head=window.head, near=window.near)
        return tail, len(model.tokenize(window.prefix))

    cache = ContextCache(model, options())
    first, _ = request(161, 0)
    cache.update([*files, first])
    for line, column in ((163, 4), (162, 0), (167, 8)):  # within the same near lines (160 to 167)
        tail, window_tokens = request(line, column)
        stats = cache.update([*files, tail])
        above = tail.index(layout.tokenizer.special.fim_suffix)  # the prefix's lines above the near ones
        assert stats.tokens_kept >= sum(map(len, files)) + above
        assert stats.tokens_reprocessed < window_tokens / 3, (line, stats.tokens_reprocessed, window_tokens)
    cache.close()
