"""How a suggestion is scored against what the author typed next.

Plain text functions, no model: they decide the quality figures, so they are unit tested on their own.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w")


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def exact_first_line(suggestion: str, expected: str) -> bool:
    """The suggestion's first line is the author's, trailing blanks aside (an empty suggestion never is)."""
    return bool(suggestion.strip()) and first_line(suggestion).rstrip() == first_line(expected).rstrip()


def accepted_chars(suggestion: str, expected: str) -> int:
    """Characters a person could accept: the longest prefix of the suggestion that is what was typed."""
    n = 0
    for a, b in zip(suggestion, expected, strict=False):
        if a != b:
            break
        n += 1
    return n


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of one character."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(suggestion: str, expected: str) -> float:
    """1 - edit distance / length of the longer text: 1.0 is the same text, 0.0 nothing in common.
    Two empty texts are the same (1.0)."""
    longest = max(len(suggestion), len(expected))
    return 1.0 if not longest else 1.0 - edit_distance(suggestion, expected) / longest


def continues_word(typed: str, suggestion: str, expected: str) -> bool:
    """A suggestion at a cut continues what is typed: it is not empty, it does not open with a blank
    where the author went on without one, and where the cut is inside a word (`typed` ends in a word
    character and the author's text goes on with one) it goes on with a word character."""
    if not suggestion or not expected:
        return False
    if suggestion[0].isspace() and not expected[0].isspace():
        return False
    inside_word = bool(typed) and _WORD.match(typed[-1]) is not None and _WORD.match(expected[0]) is not None
    return not inside_word or _WORD.match(suggestion[0]) is not None
