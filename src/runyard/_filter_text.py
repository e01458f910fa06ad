"""Reading filter text: the tokens, comparators and quoting shared by runyard's run filter
(``runyard.run_filter``) and MLflow's search grammar (``server.mlflow.search``)."""

from __future__ import annotations

import re

from .errors import UserError

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<backquoted>`(?:[^`]|``)*`)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<open>\()|(?P<close>\))|(?P<comma>,)
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
    | (?P<word>[^\W\d][\w-]*(?:\.[\w-]+)*)
    | (?P<dot>\.)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"LIKE", "ILIKE", "IN", "NOT"}


def tokens(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of each token: string, backquoted, op, open, close, comma, number,
    word or dot; a UserError names where the text cannot be read."""
    found, at = [], 0
    text = text.rstrip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise UserError(
                f"Invalid filter {text!r}: cannot read it at {text[at : at + 20].strip()!r}"
            )
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


def unquote(token: tuple[str, str]) -> str:
    kind, text = token
    if kind == "string":
        return text[1:-1].replace(text[0] * 2, text[0])
    if kind == "backquoted":
        return text[1:-1].replace("``", "`")
    return text


class Reader:
    """The tokens of a filter, read one at a time; ``fail`` makes the error to raise."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise UserError(f"Invalid filter {self.text!r}: it ends too early")
        self.at += 1
        return token

    def fail(self, what: str) -> UserError:
        return UserError(f"Invalid filter {self.text!r}: {what}")


def key_after(reader: Reader, head: str) -> str:
    """The key that follows ``head`` as ``.key`` (``tags.`a key```, ``tags."x y"``)."""
    if reader.take()[0] != "dot":
        raise reader.fail(f"expected '.' and a key after {head!r}")
    token = reader.take()
    if token[0] not in ("string", "backquoted", "word"):
        raise reader.fail(f"expected a key after {head}.")
    return unquote(token)


def comparator(reader: Reader) -> str:
    """The comparison at the reader, as a ``records.CONDITION_OPS`` name."""
    token = reader.take()
    if token[0] == "op":
        return {"<>": "!=", "==": "="}.get(token[1], token[1])
    word = token[1].upper() if token[0] == "word" else ""
    if word == "NOT":
        following = reader.take()
        if following[0] == "word" and following[1].upper() == "IN":
            return "NOT IN"
        raise reader.fail("NOT is only allowed as NOT IN")
    if word == "IS":
        following = reader.take()
        negated = following[0] == "word" and following[1].upper() == "NOT"
        if negated:
            following = reader.take()
        if following[0] != "word" or following[1].upper() != "NULL":
            raise reader.fail("IS is only allowed as IS NULL or IS NOT NULL")
        return "IS NOT NULL" if negated else "IS NULL"
    if word in _WORD_OPS:
        return word
    raise reader.fail(f"expected a comparison (=, !=, <, >, LIKE, IN…), not {token[1]!r}")
