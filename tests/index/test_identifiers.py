"""Search terms split the way code is written."""

from __future__ import annotations

import pytest

from coderag_daemon.index.identifiers import count_terms, split_identifier, terms


@pytest.mark.parametrize(
    ("identifier", "words"),
    [
        ("verify_token", ["verify", "token"]),
        ("verifyToken", ["verify", "token"]),
        ("VerifyToken", ["verify", "token"]),
        ("HTTPServerError", ["http", "server", "error"]),
        ("__init__", ["init"]),
        ("parse_v2Header", ["parse", "v2", "header"]),
        ("MAX_RETRIES", ["max", "retries"]),
    ],
)
def test_identifiers_split_into_words(identifier: str, words: list[str]) -> None:
    assert split_identifier(identifier) == words


def test_a_question_meets_the_code_it_asks_about() -> None:
    code = set(terms("def verify_token(token: str) -> Claims:\n    raise TokenExpired(claims.exp)"))
    question = set(terms("Where is the expiry of a signed token checked?"))
    assert {"verify_token", "verif", "token"} <= code  # the whole name and its words
    assert "token" in code & question
    assert "expir" in set(terms("TokenExpired")) & question  # expiry and expired meet


def test_dotted_names_split_at_the_dots() -> None:
    assert {"os", "path", "join"} <= set(terms("os.path.join(root, name)"))


def test_stopwords_keywords_and_numbers_are_left_out() -> None:
    assert terms("for the self in range 42 is None") == ["range"]


def test_document_counts_match_the_query_terms() -> None:
    text = "token = make_token(user)\nverify_token(token)\n"
    counted: dict[str, int] = {}
    for term in terms(text):
        counted[term] = counted.get(term, 0) + 1
    assert count_terms(text) == counted
