"""The query text as the lexer sees it, and errors that point into it.

The lexer counts lines at ``"\\n"`` and nowhere else: a form feed, a vertical tab, a lone
``"\\r"``, U+0085 or U+2028 is a character inside a line, not a line break. Every echo of a
source line goes through :func:`source_line`, so the line shown is the one the line number
names. Characters that would not print (controls, line and paragraph separators, other
invisible ones) are written as Python escapes (``\\x0c``, ``\\u2028``), in the echoed line and in
the message alike, so that an error is always three plain lines: message, source, caret.
"""

from __future__ import annotations

import unicodedata

from engine.errors import QueryError


def split_lines(source: str) -> list[str]:
    """The lines of ``source`` as the lexer numbers them (from 1): split at ``"\\n"`` only."""
    return source.split("\n")


def source_line(source: str, line: int) -> str:
    """Line ``line`` (1-based) of ``source``, without the ``"\\r"`` of a CRLF ending; "" past the end."""
    lines = split_lines(source)
    return lines[line - 1].removesuffix("\r") if 0 < line <= len(lines) else ""


def show(text: str, *, tabs: bool = False) -> str:
    """``text`` with every character that would not print escaped: ``"a\\x0cb"`` -> ``a\\x0cb``.

    With ``tabs``, tabs stay tabs (in an echoed line, where the caret's padding repeats them).
    """
    return "".join(_shown(c, tabs) for c in text)


def caret_pad(before: str) -> str:
    """Blanks as wide as ``show(before, tabs=True)`` on a terminal: a caret after them sits under the next character."""
    pad = []
    for c in before:
        if c == "\t":
            pad.append("\t")
        elif not c.isprintable():
            pad.append(" " * len(_shown(c, False)))
        elif unicodedata.combining(c):
            continue
        else:
            pad.append("  " if unicodedata.east_asian_width(c) in ("W", "F") else " ")
    return "".join(pad)


def error_at(path: str, source: str, line: int, column: int, message: str) -> QueryError:
    """A QueryError reading ``path:line:column: message`` followed by the source line and a caret."""
    text = source_line(source, line)
    shown, pad = show(text, tabs=True), caret_pad(text[: column - 1])
    error = QueryError(f"{show(path)}:{line}:{column}: {show(message)}\n    {shown}\n    {pad}^")
    error.path, error.line, error.column = path, line, column
    return error


def _shown(c: str, tabs: bool) -> str:
    if c.isprintable() or (tabs and c == "\t"):
        return c
    return c.encode("unicode_escape").decode("ascii")
