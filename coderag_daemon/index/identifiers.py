"""Search terms from code and questions, split the way code is written.

``verify_token``, ``verifyToken`` and ``VerifyToken`` all yield ``verify`` and ``token`` (plus the
whole identifier, so an exact name still ranks highest), dotted names are split at the dots, and
words are cut to a common prefix so that ``expiry``, ``expires`` and ``expired`` meet. Questions and
code go through the same functions, so whatever a question says is looked up the way it was indexed.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections import Counter
from functools import lru_cache

from bm25s.stopwords import STOPWORDS_EN_PLUS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")

STOPWORDS = frozenset(
    {*STOPWORDS_EN_PLUS, *(k.lower() for k in keyword.kwlist),
     "self", "cls", "this", "function", "const", "let", "var", "func", "fn", "pub", "impl",
     "public", "private", "protected", "static", "void", "null", "undefined", "nil", "elif", "args", "kwargs"}
)  # fmt: skip
"""English function words (bm25s' list) and keywords or receivers of common languages: they say
nothing about what a piece of code does."""

PREFIX_CHARS = 5
"""Words are cut to this many characters (truncation stemming): cheap, language-agnostic, and on
identifiers it merges inflections better than an English stemmer does (``recurring`` and
``recurrence`` both become ``recur``, ``delivery`` and ``deliver`` both ``deliv``)."""


def split_identifier(identifier: str) -> list[str]:
    """The words of one identifier, lowercased: ``HTTPServerError`` → ``["http", "server", "error"]``."""
    return [part.lower() for piece in identifier.split("_") for part in _PART.findall(piece)]


@lru_cache(maxsize=1 << 14)
def identifier_terms(identifier: str) -> tuple[str, ...]:
    """The terms of one identifier: its whole lowercased name if it is compound, then the prefixes
    of its words; stopwords, single letters and bare numbers are left out."""
    words = split_identifier(identifier)
    out = [identifier.lower()] if len(words) > 1 and identifier.lower() not in STOPWORDS else []
    out += [w[:PREFIX_CHARS] for w in words if len(w) > 1 and not w.isdigit() and w not in STOPWORDS]
    return tuple(out)


def terms(text: str) -> list[str]:
    """The terms of ``text`` in order, repeated as often as they occur (for a query)."""
    return [term for identifier in _IDENTIFIER.findall(text) for term in identifier_terms(identifier)]


def count_terms(text: str) -> dict[str, int]:
    """How often each term occurs in ``text`` (for a document): the same terms as :func:`terms`,
    counted per distinct identifier, which is several times faster on code."""
    counts: dict[str, int] = {}
    get = counts.get
    for identifier, n in Counter(_IDENTIFIER.findall(text)).items():
        for term in identifier_terms(identifier):
            counts[term] = get(term, 0) + n
    return counts


def fingerprint() -> str:
    """Changes whenever the rules here change, so that terms saved under other rules are not mixed in."""
    rules = [_IDENTIFIER.pattern, _PART.pattern, PREFIX_CHARS, *sorted(STOPWORDS)]
    return hashlib.sha256("\n".join(map(str, rules)).encode()).hexdigest()[:16]
