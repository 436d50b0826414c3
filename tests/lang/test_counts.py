"""Counts, digits and words: samples and draws are capped whole numbers, digits are ASCII, keywords are whole words."""

import pytest

from engine.errors import QueryError
from engine.lang import MAX_DRAWS, MAX_SAMPLES, parse


def head(text: str) -> str:
    with pytest.raises(QueryError) as e:
        parse(text, "q.cq")
    return str(e.value).split("\n")[0]


# ---- samples: a whole number of images, 1 to MAX_SAMPLES ------------------------------------


def test_samples_up_to_the_cap():
    assert MAX_SAMPLES == 1000
    assert parse(f"do(x=1) samples {MAX_SAMPLES}").statements[0].samples == MAX_SAMPLES
    assert parse("given img, do(x=1) samples 0008").statements[0].samples == 8


@pytest.mark.parametrize(
    "text, column",
    [("do(x=1) samples 1001", 17), ("given img, do(x=1) samples 99999999999999999999999", 28), ("given a=1 samples 5000", 19)],
)
def test_samples_over_the_cap_name_the_place_and_the_cap(text, column):
    count = text.split()[-1]
    assert head(text) == f"q.cq:1:{column}: samples {count} is more than 1000 (MAX_SAMPLES: each sample is an image in the answer)"


@pytest.mark.parametrize("count", ["0", "-1", "2.5", "1e9", "1e3", "2.0", "+3", "1deg", "000"])
def test_samples_must_be_a_whole_number_in_digits(count):
    # 1e3 and 2.0 are whole, but a count is written in digits: `samples 1e9` is a typo, not a request.
    assert head(f"do(x=1) samples {count}") == (
        f"q.cq:1:17: samples must be a whole number from 1 to 1000 written in digits, got '{count}'"
    )


def test_a_count_too_long_for_int_is_still_a_query_error():
    assert "samples 1111" in head("do(x=1) samples " + "1" * 5000)
    assert "draws 1111" in head("E[y] draws " + "1" * 5000)


def test_draws_up_to_the_cap():
    assert MAX_DRAWS == 10_000_000
    assert parse("E[y] draws 10000000").statements[0].draws == MAX_DRAWS
    assert head("E[y] draws 10000001") == "q.cq:1:12: draws 10000001 is more than 10000000 (MAX_DRAWS)"


# ---- digits are 0-9 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, column, digit",
    [
        ("img = dsprites[٣]", 16, "٣"),  # ARABIC-INDIC DIGIT THREE
        ("do(x=٠.5)", 6, "٠"),
        ("do(x=１)", 6, "１"),  # FULLWIDTH DIGIT ONE
        ("do(x=1٣)", 7, "٣"),
        ("do(x=0.5) samples ٣", 19, "٣"),
        ("P(y > ٣)", 7, "٣"),
        ("s = data[٣:]", 10, "٣"),
    ],
)
def test_non_ascii_digits_are_not_numbers(text, column, digit):
    message = head(text)
    assert message.startswith(f"q.cq:1:{column}: syntax error: ")
    assert f"'{digit}' is not one of the digits 0-9; numbers are written with ASCII digits" in message


def test_a_digit_that_is_not_ascii_is_not_part_of_a_name_either():
    assert "not one of the digits 0-9" in head("do(x٣=1)")


# ---- keywords are whole words ---------------------------------------------------------------


def test_a_keyword_glued_to_its_number_is_a_name():
    assert head("do(x=1) samples2") == (
        "q.cq:1:9: syntax error: 'samples2' is one name; put a space between 'samples' and its number: 'samples 2'"
    )
    assert head("given img, do(x=1) samples16").startswith("q.cq:1:20: syntax error: 'samples16' is one name")
    assert head("P(y) draws100").startswith("q.cq:1:6: syntax error: 'draws100' is one name")


def test_a_keyword_glued_to_more_is_a_name_wherever_it_stands():
    assert head("given_img, do(x=1)").startswith("q.cq:1:1: syntax error: a statement starts with 'given'")
    assert head("given img, doo(x=1)").endswith("(did you mean 'do' instead of 'doo'?)")
    assert head("do(x=1) samplesx 2").startswith("q.cq:1:9: syntax error: unexpected name 'samplesx'")


def test_keywords_are_names_where_the_grammar_expects_a_name():
    s = parse("given P=given, E=do, samples=draws").statements[0]
    assert [(a.name, a.value.value) for a in s.evidence] == [("P", "given"), ("E", "do"), ("samples", "draws")]
    assert parse("E[y | E=1]").statements[0].expr.given.evidence[0].left.node == "E"
