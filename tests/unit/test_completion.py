"""Completion stops, trimming and the type-through cache (no model)."""

from __future__ import annotations

from coderag_daemon.prompting.completion import (
    StopRule,
    TypeThroughCache,
    Window,
    WindowStarts,
    cursor_window,
    file_head,
    trim_suffix_overlap,
)


def test_window_takes_whole_lines_around_the_cursor() -> None:
    text = "".join(f"line{i}\n" for i in range(100))
    offset = text.index("line50") + 3
    w = cursor_window(text, offset, prefix_lines=2, suffix_lines=1, anchor=1)
    assert w.prefix == "line48\nline49\nlin"
    assert w.suffix == "e50\nline51\n"


def test_window_start_stays_put_while_typing_new_lines() -> None:
    text = "".join(f"line{i}\n" for i in range(200))
    starts = set()
    for cursor_line in range(100, 120):  # the user types twenty new lines
        offset = text.index(f"line{cursor_line}\n")
        starts.add(cursor_window(text, offset, prefix_lines=64, anchor=32).prefix.split("\n", 1)[0])
    assert starts == {"line32"}
    w = cursor_window(text, text.index("line100\n"), prefix_lines=64, anchor=32)
    assert w.prefix.count("\n") >= 64


def _lines(n: int, skip: range = range(0)) -> str:
    return "".join(f"line{i}\n" for i in range(n) if i not in skip)


def test_deleting_lines_above_the_cursor_keeps_the_window_start() -> None:
    starts = WindowStarts()
    text = _lines(300)
    first = starts.window("u", text, text.index("line100\n"))
    assert first.first_line == 32 and first.prefix.startswith("line32\n")
    # six lines deleted just above the cursor: the grid line would drop to 0 and change every line
    shorter = _lines(300, skip=range(90, 96))
    again = starts.window("u", shorter, shorter.index("line100\n"))
    assert again.prefix.startswith("line32\n") and again.first_line == 32
    assert cursor_window(shorter, shorter.index("line100\n")).first_line == 0


def test_the_window_start_follows_lines_added_or_deleted_above_it() -> None:
    starts = WindowStarts()
    text = _lines(300)
    starts.window("u", text, text.index("line150\n"))  # starts on line86's grid line, 64
    moved = "added\n" * 10 + _lines(300, skip=range(5, 20))  # +10 and -15 lines above the window
    window = starts.window("u", moved, moved.index("line150\n"))
    assert window.prefix.startswith("line64\n") and window.first_line == 64 - 5
    assert window.prefix.count("\n") >= 64 - 32


def test_a_kept_start_gives_way_when_the_cursor_moves_far() -> None:
    starts = WindowStarts()
    text = _lines(400)
    starts.window("u", text, text.index("line100\n"))
    far = starts.window("u", text, text.index("line300\n"))
    assert far.first_line == 224  # the grid line again: 300 - 64 = 236, down to a multiple of 32
    near_top = starts.window("u", text, text.index("line250\n"))
    assert near_top.first_line == 160 and near_top.prefix.count("\n") >= 64  # 224 would leave too few lines
    assert starts.window("u", text, text.index("line200\n")).first_line == 160  # kept: 40 lines above
    starts.forget("u")  # the document was closed
    assert starts.window("u", text, text.index("line200\n")).first_line == 128


def test_the_near_lines_start_on_a_grid_line_the_cursor_can_move_below() -> None:
    text = _lines(300)
    near_starts = set()
    for cursor_line in range(120, 128):  # typing or moving over eight lines
        window = cursor_window(text, text.index(f"line{cursor_line}\n") + 2, near_lines=8)
        assert window.first_line == 32
        near_starts.add(window.prefix[window.near :].split("\n", 1)[0])
    assert near_starts == {"line112"}
    window = cursor_window(text, text.index("line128\n"), near_lines=8)
    assert window.prefix[window.near :].startswith("line120\n")  # the next grid line: 8 lines at least
    assert cursor_window(text, text.index("line12\n"), near_lines=8).near == 0  # the window is all near
    assert cursor_window(text, text.index("line5\n"), near_lines=8).near == 0


def test_typed_lines_join_the_near_lines_until_there_are_too_many() -> None:
    starts = WindowStarts()
    near_starts = []
    for typed in range(40):  # the user types forty lines at line 120
        text = _lines(120) + "".join(f"new{j}\n" for j in range(typed)) + _lines(300)[len(_lines(120)) :]
        window = starts.window("u", text, text.index("line120\n"))
        near_starts.append(window.prefix[window.near :].split("\n", 1)[0])
    assert near_starts[:32] == ["line112"] * 32  # 8 to 39 lines above the cursor: kept
    assert near_starts[32:] == ["new24"] * 8  # then the grid line again: line 144, 8 lines up at least
    text = _lines(300)
    starts.window("u", text, text.index("line120\n"))
    back = starts.window("u", text, text.index("line117\n"))  # a few lines up: still 4 lines below
    assert back.prefix[back.near :].startswith("line112\n")
    above = starts.window("u", text, text.index("line115\n"))  # above the kept near lines' 4
    assert above.prefix[above.near :].startswith("line104\n")
    starts.window("v", text, text.index("line12\n"))  # near the top the whole window is near
    assert starts.window("v", text, text.index("line17\n")).near == 0  # and stays so while typing


def test_window_at_edges() -> None:
    assert cursor_window("abc", 0) == Window("", "abc")
    assert cursor_window("abc", 3) == Window("abc", "")


def test_the_file_head_keeps_whole_import_statements_in_order() -> None:
    text = (
        '"""Docs that mention import here."""\n'
        "from __future__ import annotations\n"
        "\n"
        "import os, \\\n"
        "    sys\n"
        "from .a import (\n"
        "    b,\n"
        "    c,\n"
        ")\n"
        "X = 1  # import nothing\n"
        "def f():\n"
        "    import json\n"
        "#include <stdio.h>\n"
        "const fs = require('fs');\n"
        "use std::io;\n"
    )
    assert file_head(text) == (
        "from __future__ import annotations\nimport os, \\\n    sys\nfrom .a import (\n    b,\n    c,\n)\n"
        "#include <stdio.h>\nconst fs = require('fs');\nuse std::io;\n"
    )
    assert file_head("import a\n" + "x = 1\n" * 200 + "import late\n") == "import a\n"  # the first lines only
    assert file_head("") == ""


def test_the_window_carries_the_imports_it_no_longer_shows() -> None:
    text = "import os\nfrom a import b\n" + _lines(200)
    assert cursor_window(text, len(text)).head == "import os\nfrom a import b\n"
    short = "import os\nx = 1\n"
    assert cursor_window(short, len(short)) == Window(short, "")  # the window shows them itself


def test_mid_line_completes_the_line_only() -> None:
    rule = StopRule.at(Window("x = compute(", ")\n"))
    assert rule.single_line
    assert rule.cut("a, b") is None
    assert rule.cut("a, b\n    more") == 4


def test_block_ends_at_dedent() -> None:
    prefix = "def f(x):\n    if x:\n        "
    rule = StopRule.at(Window(prefix, "\n"))
    assert not rule.single_line and rule.block_indent == 8
    assert rule.cut("return 1\n        ") is None  # still inside the block; last line may grow
    assert rule.cut("return 1\n    return 2\n") == len("return 1")


def test_empty_line_after_block_opener_indents() -> None:
    rule = StopRule.at(Window("def f(x):\n", ""))
    assert rule.block_indent == 4
    assert rule.cut("    y = x\n    return y\ndef g():\n") == len("    y = x\n    return y")


def test_at_the_end_of_a_line_that_opens_a_block_the_body_is_the_block() -> None:
    rule = StopRule.at(Window("class A:\n    def f(self) -> bool:", "\n"))
    assert not rule.single_line
    body = "\n        return True\n"
    assert rule.cut(body + "\n    def g(self):\n        pass\n") == len(body)  # not into the next method
    top = StopRule.at(Window("def f(x):", ""))
    assert top.cut("\n    return x\n\n\ndef g():\n") == len("\n    return x\n\n")


def test_a_statement_being_written_is_completed_to_its_end_only() -> None:
    rule = StopRule.at(Window("def f(x):\n    total = comp", ""))
    assert rule.single_line
    assert rule.cut("ute(x)\n    return total\n") == len("ute(x)")
    assert StopRule.at(Window("def f(x):\n    y = 1\n    ", "\n")).single_line  # the next statement
    assert not StopRule.at(Window("import os\n\n", "")).single_line  # top level: a new def, a class...


def _rule_at_end(before: str, after: str = "") -> StopRule:
    return StopRule.at(cursor_window(before + after, len(before)))


def test_a_statement_left_open_goes_on_to_the_line_that_closes_it() -> None:
    rule = _rule_at_end("class E(ValueError):\n    def __init__(\n        self,\n        ms")
    params = "g: str = D,\n        *args: Any,\n    ):"
    assert rule.cut(params + "\n        if args:\n") == len(params)  # the signature, not the body
    assert rule.cut(params[:-3]) is None  # the last piece may still grow
    call = _rule_at_end("def f():\n    raise E(")
    assert call.cut('"bad", src, pos)\n    return\n') == len('"bad", src, pos)')  # closed on its line
    assert call.cut('\n        "bad", src, pos\n    )\n') == 0  # the line is done at the cursor: nothing
    on_empty = _rule_at_end("def f():\n    warn(\n        'a',\n        ")
    assert on_empty.cut("DeprecationWarning,\n        stacklevel=2,\n    )\n    x\n") == len(
        "DeprecationWarning,\n        stacklevel=2,\n    )"
    )


def test_a_statement_ends_before_a_blank_line_or_a_dedent_out_of_it() -> None:
    rule = _rule_at_end("def f():\n    x = g(\n        a,")
    assert rule.cut(" b,\n        c,\n\n    y = 2\n") == len(" b,\n        c,")
    assert rule.cut(" b,\ny = 2\n") == len(" b,")
    assert rule.cut_short(" b,\n        c,\n        d") == " b,\n        c,"  # a budget cut: whole lines


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    assert _rule_at_end('x = ")" + f(\n    "(", # (\n    ').statement is not None
    assert _rule_at_end("x = f(\"a)\", '(')  # f(\ny = ").single_line
    doc = 'def f():\n    """Note.\n' + "\n" * 100 + '    See g(x.\n    """\n    y = '
    assert cursor_window(doc, len(doc)).first_line > 1  # the window begins inside the docstring
    assert _rule_at_end(doc).single_line  # its text is no statement: the whole file is read
    assert _rule_at_end('s = """(\n\n"""\ny = ').single_line
    inside = _rule_at_end('raise E("Cannot overw')
    assert inside.cut('rite", src)\nnext\n') == len('rite", src)')


def test_inside_a_literal_the_completion_is_one_item() -> None:
    assert _rule_at_end('__all__ = [\n    "Base",\n    "Acq').single_line
    assert _rule_at_end("CONFIG = {\n    'a': 1,\n    'b':").single_line  # a key, not a block
    first = _rule_at_end("__all__ = [\n    ")  # the line after the bracket: the block it opens
    assert first.cut('"a",\n    "b",\n]\nx\n') == len('"a",\n    "b",')
    inner = _rule_at_end("ITEMS = [\n    make(\n        1,")  # a call inside the literal
    assert inner.cut(" 2,\n    ),\n    make(\n") == len(" 2,\n    ),")


def test_braces_open_blocks_in_languages_with_c_comments() -> None:
    js = "function f(a) {\n  const x = g("
    rule = StopRule.at(WindowStarts().window("file:///p/a.js", js, len(js)))
    assert rule.statement is not None and rule.statement.open == (("(", 2),)
    py = "CONFIG = {\n    'a': f("
    rule = StopRule.at(WindowStarts().window("file:///p/a.py", py, len(py)))
    assert rule.statement is not None and [b for b, _ in rule.statement.open] == ["{", "("]


def test_top_level_statement_stops_at_blank_line() -> None:
    rule = StopRule.at(Window("import os\n", ""))
    assert rule.cut("import sys\n\nimport re\n") == len("import sys")


def test_trim_closing_brackets_already_in_suffix() -> None:
    assert trim_suffix_overlap("a, b)", ")\n") == "a, b"
    assert trim_suffix_overlap("value\n    return x", "    return x\n") == "value"
    assert trim_suffix_overlap("total = 1", "foo\n") == "total = 1"


def test_trim_does_not_eat_short_word_overlaps() -> None:
    assert trim_suffix_overlap("result = ab", "b = 2\n") == "result = ab"


def test_type_through_answers_from_cache() -> None:
    cache = TypeThroughCache()
    cache.remember("file:///a.py", "def f(", ")\n", "x, y")
    assert cache.lookup("file:///a.py", "def f(x", ")\n") == ", y"
    assert cache.lookup("file:///a.py", "def f(x, y", ")\n") is None  # fully typed: nothing left
    assert cache.lookup("file:///a.py", "def f(z", ")\n") is None  # typed something else
    assert cache.lookup("file:///a.py", "def f(x", "]\n") is None  # text after the cursor changed
    assert cache.lookup("file:///b.py", "def f(x", ")\n") is None
