"""The hardened DAG YAML reader: every bad input is a DagError with PATH:LINE:COL, never a traceback."""

import re
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import DagError
from engine.model.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_NODES, number, read_yaml

DSPRITES = Path(__file__).resolve().parents[2] / "dags" / "dsprites.yaml"
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def error(source, path="f.yaml") -> str:
    with pytest.raises(DagError) as e:
        read_yaml(source, path)
    return str(e.value)


def test_dsprites_reads_as_safe_load():
    text = DSPRITES.read_text()
    data, root = read_yaml(text, str(DSPRITES))
    assert data == yaml.safe_load(text)
    nodes = dict((k.value, v) for k, v in root.value)["nodes"]
    assert [k.start_mark.line + 1 for k, _ in nodes.value][:2] == [7, 12]


def test_empty_file_is_none_with_a_node():
    data, root = read_yaml("# nothing\n", "f.yaml")
    assert data is None and root.start_mark.line == 0


# 1. bytes and characters

@pytest.mark.parametrize("raw", [b"a: \xc3\xa9\n", b"\xef\xbb\xbfa: \xc3\xa9\n", "a: é\n".encode("utf-16"),
                                 "a: é\n".encode("utf-32"), "a: é\n".encode("utf-16-be").join([b"\xfe\xff", b""])])
def test_utf8_with_or_without_bom_and_utf16_32_with_bom(raw):
    assert read_yaml(raw, "f.yaml")[0] == {"a": "é"}


def test_undecodable_bytes_name_file_offset_and_utf8():
    msg = error(b"a: 1\nb: \xff\n", "dag.yaml")
    assert msg.startswith("dag.yaml:2:4: byte 0xff at offset 8 is not valid UTF-8") and "must be UTF-8" in msg


def test_utf16_without_bom_is_explained():
    assert "byte-order mark" in error("a: é\n".encode("utf-16-le"))


@pytest.mark.parametrize("text, code, where", [("a: 1\nb: \x00\n", "U+0000", "f.yaml:2:4"),
                                                ("a: \x07", "U+0007", "f.yaml:1:4"), ("a: \ud800", "U+D800", "f.yaml:1:4")])
def test_control_characters(text, code, where):
    msg = error(text)
    assert msg.startswith(f"{where}: character {code} is not allowed") and "printable text" in msg


# 2. duplicate keys

@pytest.mark.parametrize("text, message", [
    ("nodes: {}\nname: x\nnodes: {}\n", "f.yaml:3:1: 'nodes' at line 3 repeats the key from line 1"),
    ("nodes:\n  x: {mechanism: a}\n  y: {}\n  x: {}\n", "f.yaml:4:3: 'x' at line 4 repeats the key from line 2"),
    ("n:\n  x:\n    params:\n      sigma: 1\n      sigma: 2\n", "'sigma' at line 5 repeats the key from line 4"),
    ("{a: 1, b: 2, a: 3}", "f.yaml:1:14: 'a' at line 1 repeats the key from line 1"),
    ("1: a\ntrue: b\n", "True at line 2 repeats the key from line 1"),
])
def test_duplicate_keys(text, message):
    msg = error(text)
    assert message in msg and "each key may appear once" in msg


def test_merge_keys_may_be_overridden():
    text = "base: &b {x: 1, y: 2}\nuse: {<<: *b, x: 3}\ndeep: {v: {w: &c {<<: {k: 1}, k: 2}}}\nlate: {<<: *c}\n"
    assert read_yaml(text, "f.yaml")[0] == yaml.safe_load(text)


# 3. floats with exponents

def test_exponent_floats_and_ints():
    data, _ = read_yaml("a: 1e-1\nb: -2.5E+3\nc: 1e5\nd: 12\ne: -3\nf: 0x1f\ng: 1e\nh: '1e5'\n", "f.yaml")
    assert data == {"a": 0.1, "b": -2500.0, "c": 1e5, "d": 12, "e": -3, "f": 31, "g": "1e", "h": "1e5"}
    assert all(type(data[k]) is int for k in "def")


# 4. non-finite numbers

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN", "+.Inf", "1e999", "!!float .nan"])
def test_non_finite_numbers(value):
    msg = error(f"nodes:\n  x:\n    params:\n      loc: {value}\n")
    assert msg.startswith("f.yaml:4:12: non-finite number ") and "at line 4, column 12; use a finite number" in msg


# 5. alias bombs and deep nesting

def laughs(levels: int = 9, mapping: bool = False) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        items = [f"k{j}: *l{i - 1}" if mapping else f"*l{i - 1}" for j in range(9)]
        lines.append(f"l{i}: &l{i} " + ("{%s}" if mapping else "[%s]") % ", ".join(items))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("mapping", [False, True])
def test_billion_laughs_stops_fast_in_bounded_memory(mapping):
    tracemalloc.start()
    start = time.perf_counter()
    msg = error(laughs(mapping=mapping))
    elapsed, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert f"expands to more than {MAX_NODES:,} YAML nodes (aliases); DAG files must be smaller" in msg
    assert elapsed < 0.5 and peak < 20_000_000


def test_moderate_aliases_are_fine():
    data, _ = read_yaml(laughs(levels=3), "f.yaml")
    assert len(data["l3"]) == 9 and data["l3"][0][0][0] == data["l0"]


@pytest.mark.parametrize("text", ["a: &a [1, *a]", "a: &a {b: [*a]}"])
def test_recursive_alias(text):
    assert "refers to a collection that contains it" in error(text)


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "}" * 10_000,
                                  "".join("  " * i + "a:\n" for i in range(500)) + "  " * 500 + "b: 1\n",
                                  "".join("  " * i + "- \n" for i in range(500))])
def test_deep_nesting(text):
    start = time.perf_counter()
    assert f"nesting deeper than {MAX_DEPTH} levels" in error(text)
    assert time.perf_counter() - start < 2


def test_deep_nesting_through_aliases():
    text = "a: &a " + "[" * 30 + "]" * 30 + "\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(5))
    assert "through aliases" in error(text)


# 6. malformed YAML, odd tags and scalars

@pytest.mark.parametrize("text, where, problem", [
    ("a: [1", "f.yaml:1:6", "expected ',' or ']'"),
    ("a: 1\n b: 2\n", "f.yaml:2:3", "mapping values are not allowed here"),
    ("a: *missing", "f.yaml:1:4", "found undefined alias"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1", "another document"),
    ("a: !foo x", "f.yaml:1:4", "could not determine a constructor"),
    ("? [1]\n: 2\n", "f.yaml:1:3", "found unhashable key"),
])
def test_malformed_yaml_has_line_and_column(text, where, problem):
    msg = error(text)
    assert msg.startswith(f"{where}: malformed YAML: ") and problem in msg


@pytest.mark.parametrize("text, message", [
    ("a: !!set {x}", "the tag tag:yaml.org,2002:set is not supported"),
    ("a: !!binary aGk=", "the tag tag:yaml.org,2002:binary is not supported"),
    ("a: !!float abc", "'abc' is not a valid number"),
    ("a: !!int abc", "'abc' is not a valid integer"),
    ("a: !!bool abc", "'abc' is not a valid boolean"),
    ("a: " + "1" * 5000, "is not a valid integer"),
    ('a: "\\UFFFFFFFF"', "f.yaml:1:"),
])
def test_odd_tags_and_scalars(text, message):
    assert message in error(text)


def test_dates_stay_strings():
    assert read_yaml("a: 2001-12-14\nb: 2001-13-45\n", "f.yaml")[0] == {"a": "2001-12-14", "b": "2001-13-45"}


# 7. size

@pytest.mark.parametrize("source", [b"#" * (MAX_BYTES + 1), "#" * (MAX_BYTES + 1), "é" * (MAX_BYTES // 2 + 1)])
def test_oversized_input(source):
    start = time.perf_counter()
    assert f"larger than {MAX_BYTES:,} bytes" in error(source)
    assert time.perf_counter() - start < 0.2


# number()

@pytest.mark.parametrize("value, expected", [(1, 1.0), (2.5, 2.5), ("pi", 3.141592653589793), ("2pi", 6.283185307179586),
                                             ("2*pi", 6.283185307179586), ("0.5pi", 1.5707963267948966),
                                             ("-pi", -3.141592653589793), ("1e-1", 0.1), (" 2 * pi ", 6.283185307179586)])
def test_number_accepts(value, expected):
    assert number(value, "w") == pytest.approx(expected)


@pytest.mark.parametrize("value", [".pi", "..pi", "1.2.3pi", "nan", "inf", "1e999", "*pi", "", True, False, None,
                                   float("nan"), float("inf"), 10**400, [1], "1e999pi"])
def test_number_rejects(value):
    with pytest.raises(DagError, match=r"^dag.yaml:3: node 'x': expected a finite number, got .*; use a number"):
        number(value, "dag.yaml:3: node 'x'")


# property-based: never anything but data or a DagError

def survives(source) -> None:
    try:
        data, root = read_yaml(source, "f.yaml")
    except DagError as e:
        assert re.match(r"f\.yaml(:\d+:\d+)?: ", str(e))
    else:
        assert isinstance(root, yaml.Node)
        repr(data)  # plain, finite, not recursive


YAMLISH = st.text(alphabet=list("[]{}:,-?&*!|>'\"#%@`<= \n\t.0123456789eE+_xpinaf") + ["\\", "\ufeff", "\x00", "\x85", "\u2028"],
                  max_size=80)


@FUZZ
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
def test_any_text(text):
    survives(text)


@FUZZ
@given(YAMLISH)
def test_yaml_like_text(text):
    survives(text)


@FUZZ
@given(st.binary(max_size=200) | st.tuples(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"]),
                                           st.binary(max_size=100)).map(b"".join))
def test_any_bytes(raw):
    survives(raw)


@st.composite
def mutated_dag(draw) -> str:
    text = DSPRITES.read_text()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "repeat-line"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "repeat-line":
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i) + 1 or len(text)
            text = text[:end] + text[start:end] + text[end:]
        else:
            text = text[:i] + draw(YAMLISH) + text[j if kind == "replace" else i:]
    return text


@FUZZ
@given(mutated_dag())
def test_mutated_dag(text):
    survives(text)
    survives(text.encode("utf-8", "surrogatepass"))
