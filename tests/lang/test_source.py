"""Source lines as the lexer counts them, escaped echoes, carets, byte-order marks and file encodings."""

import pytest

from engine.errors import QueryError
from engine.lang import parse, parse_file
from engine.lang.source import caret_pad, error_at, show, source_line, split_lines

# Characters that str.splitlines() would break a line at, but the lexer (which counts "\n") does not.
NOT_NEWLINES = ["\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def error(text: str) -> tuple[str, str, str]:
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    head, line, caret = str(e.value).split("\n")
    return head, line, caret


@pytest.mark.parametrize("c", NOT_NEWLINES, ids=[repr(c) for c in NOT_NEWLINES])
def test_only_a_new_line_splits_lines(c):
    assert split_lines(f"a{c}b\nc") == [f"a{c}b", "c"]
    assert source_line(f"a{c}b\nc", 2) == "c"


@pytest.mark.parametrize("c", NOT_NEWLINES, ids=[repr(c) for c in NOT_NEWLINES])
def test_the_echoed_line_is_the_line_the_number_names(c):
    # splitlines() would break the comment in two and echo its second half as line 2.
    head, line, caret = error(f"# a comment with {c} inside\ndo(y=2 z=3)")
    assert head.startswith("q.cq:2:8:") and line == "    do(y=2 z=3)" and caret == "    " + " " * 7 + "^"


@pytest.mark.parametrize("c", [c for c in NOT_NEWLINES if c not in "\x0c\r"], ids=repr)
def test_other_line_breaks_in_code_are_unexpected_characters_shown_escaped(c):
    head, line, caret = error(f"do(x=1){c}\ndo(x=2)")
    assert head.startswith(f"q.cq:1:8: syntax error: unexpected character '{show(c)}'") and c not in head
    assert line == f"    do(x=1){show(c)}" and caret == "    " + " " * 7 + "^"


def test_a_form_feed_is_echoed_escaped_with_the_caret_under_the_column():
    head, line, caret = error("do(x=1);\x0cdo(y=2 z=3)")
    assert head == "q.cq:1:17: syntax error: expected ',' or ')' after an intervention (name=value)"
    assert line == r"    do(x=1);\x0cdo(y=2 z=3)"
    assert caret == "    " + " " * len(r"do(x=1);\x0cdo(y=2 ") + "^"


def test_a_line_separator_is_named_and_escaped():
    head, line, caret = error("do(x=1)\u2028do(x=2)")
    assert head == (
        r"q.cq:1:8: syntax error: unexpected character '\u2028' (LINE SEPARATOR); "
        "words are separated by spaces or tabs, statements by a new line or ';'"
    )
    assert line == r"    do(x=1)\u2028do(x=2)" and caret == "    " + " " * 7 + "^"


def test_crlf_lines_echo_without_the_carriage_return():
    head, line, caret = error("do(x=1)\r\ndo(y=2 z=3)\r\n")
    assert head.startswith("q.cq:2:8:") and line == "    do(y=2 z=3)" and caret == "    " + " " * 7 + "^"


def test_a_lone_carriage_return_is_inside_its_line():
    head, line, caret = error("do(x=1)\rdo(y=2)")
    assert head.startswith("q.cq:1:9: syntax error: unexpected name 'do' after a complete statement")
    assert line == r"    do(x=1)\rdo(y=2)" and caret == "    " + " " * len(r"do(x=1)\r") + "^"


def test_messages_escape_what_they_quote():
    head, _, _ = error("do(x=1)\x1b")
    assert r"'\x1b'" in head and "\x1b" not in head
    head, _, _ = error('p = png("a\x07.png" x=1)')
    assert "\x07" not in head


def test_executor_errors_are_escaped_too():
    program = parse("do(x=1) # \x00 note\ndo(y=2)")
    text = str(program.error(program.statements[0].interventions[0], "unknown node 'x\x00'"))
    assert text == "<query>:1:4: unknown node 'x\\x00'\n    do(x=1) # \\x00 note\n       ^"


def test_show_escapes_exactly_the_unprintable():
    assert show("heart ♥ é 日本") == "heart ♥ é 日本"
    assert show("a\tb\x00\x7f\u200b\U000e0001") == r"a\tb\x00\x7f\u200b\U000e0001"
    assert show("a\tb", tabs=True) == "a\tb"


def test_the_caret_pad_is_as_wide_as_what_it_pads():
    assert caret_pad("\ta\x0c") == "\t" + " " + "    "
    assert caret_pad("日本x") == "     "  # wide characters take two columns
    assert caret_pad("e\u0301") == " "  # a combining accent takes none


def test_error_at_past_the_end_of_the_source():
    e = error_at("q.cq", "do(x=1)", 5, 3, "oops")
    assert str(e) == "q.cq:5:3: oops\n    \n    ^" and (e.line, e.column) == (5, 3)


# ---- byte-order marks and encodings ---------------------------------------------------------


def test_a_byte_order_mark_at_the_start_is_dropped():
    assert parse("\ufeffdo(x=1)").statements == parse("do(x=1)").statements
    assert parse("\ufeff").statements == ()
    head, line, caret = error("\ufeffdo(x=1 y=2)")
    assert head.startswith("q.cq:1:8:") and line == "    do(x=1 y=2)" and caret == "    " + " " * 7 + "^"


def test_a_byte_order_mark_elsewhere_is_an_escaped_error():
    head, line, _ = error("do(x=1)\n\ufeffdo(x=2)")
    assert head.startswith(r"q.cq:2:1: syntax error: unexpected character '\ufeff'") and line == r"    \ufeffdo(x=2)"


def test_a_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.cq"
    path.write_bytes(b"\xef\xbb\xbfimg = dsprites[3]\r\ngiven img, do(x=0.5)\r\n")
    program = parse_file(path)
    assert [s.line for s in program.statements] == [1, 2] and program.statements[0].column == 1
    path.write_bytes(b"\xef\xbb\xbfdo(x=1 y=2)")
    with pytest.raises(QueryError) as e:
        parse_file(path)
    head, line, _ = str(e.value).split("\n")
    assert head == f"{path}:1:8: syntax error: expected ',' or ')' after an intervention (name=value)"
    assert line == "    do(x=1 y=2)"


NOT_UTF8 = {"latin1": b"do(shape=c\xe9ur)", "utf16": b"\xff\xfed\x00o\x00", "stray": b"do(x=1)\n\x80"}


@pytest.mark.parametrize("data", NOT_UTF8.values(), ids=NOT_UTF8.keys())
def test_a_file_that_is_not_utf8_is_a_query_error_naming_it(tmp_path, data):
    path = tmp_path / "bad.cq"
    path.write_bytes(data)
    with pytest.raises(QueryError, match=rf"^{path}: the query file is not UTF-8 text \(.* at byte \d+\)$"):
        parse_file(path)


def test_an_unreadable_path_is_a_query_error(tmp_path):
    with pytest.raises(QueryError, match="cannot read the query file"):
        parse_file(tmp_path)  # a directory
