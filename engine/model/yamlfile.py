"""A hardened YAML reader for DAG files: every bad input is a DagError, never a traceback.

``read_yaml`` keeps PyYAML's YAML 1.1 reading (safe tags only) with these changes:

- bytes must be UTF-8 (a BOM is allowed); UTF-16 and UTF-32 are decoded when they start with a BOM;
- control characters, duplicate mapping keys and non-finite numbers (``.nan``, ``.inf``) are errors;
- ``1e-1`` and ``1e5`` are floats (YAML 1.1 reads them as strings); dates stay strings;
- ``!!binary``, ``!!set``, ``!!omap`` and ``!!pairs`` are refused, so the data is plain
  dicts, lists, str, int, float, bool and None;
- limits, checked while the file is read: ``MAX_BYTES`` (file size), ``MAX_DEPTH`` (nesting of
  mappings and lists, counted through aliases) and ``MAX_NODES`` (YAML nodes with every alias
  counted as the whole subtree it stands for, which stops "billion laughs" alias bombs early).
"""

import math
import re
from typing import Any, NoReturn

import yaml

from engine.errors import DagError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 32
MAX_NODES = 100_000

_BOMS = [  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\xfe\xff", "utf-16"), (b"\xff\xfe", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"),
]
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_PI = re.compile(r"([+-]?)(?:((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\*?\s*)?pi")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _at(path: str, mark: Any) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts and bounds nodes while composing and refuses ambiguous data."""

    def __init__(self, text: str, path: str):
        super().__init__(text)
        self.path, self.depth, self.total, self.aliased = path, 0, 0, False
        self.sizes: dict[int, int] = {}  # id(finished node) -> nodes it stands for, aliases expanded
        self.heights: dict[int, int] = {}  # id(finished node) -> nesting depth below and including it
        self.checked: set[int] = set()  # mappings whose keys were checked for duplicates

    def fail(self, mark: Any, message: str) -> NoReturn:
        raise DagError(f"{_at(self.path, mark)}: {message}")

    def count(self, n: int, mark: Any, alias: bool = False) -> None:
        self.total, self.aliased = self.total + n, self.aliased or (alias and n > 1)
        if self.total > MAX_NODES:
            how = " (aliases)" if self.aliased else ""
            self.fail(mark, f"the file expands to more than {MAX_NODES:,} YAML nodes{how}; DAG files must be smaller")

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = self.anchors.get(self.peek_event().anchor)
            if node is not None:
                if id(node) not in self.sizes:
                    self.fail(mark, f"alias *{self.peek_event().anchor} refers to a collection that contains it; "
                                    "an alias must refer to a finished anchor")
                if self.depth + self.heights[id(node)] > MAX_DEPTH:
                    self.fail(mark, f"nesting deeper than {MAX_DEPTH} levels (through aliases); DAG files nest at most {MAX_DEPTH} deep")
                self.count(self.sizes[id(node)], mark, alias=True)
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            self.fail(mark, f"nesting deeper than {MAX_DEPTH} levels; DAG files nest mappings and lists at most {MAX_DEPTH} deep")
        before = self.total
        self.count(1, mark)
        self.depth += 1
        node = super().compose_node(parent, index)
        self.depth -= 1
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        self.heights[id(node)] = 1 + max((self.heights[id(c)] for c in children), default=0)
        self.sizes[id(node)] = self.total - before
        return node

    def flatten_mapping(self, node: Any) -> None:
        if id(node) not in self.checked:  # before merges (<<) are flattened into node.value
            self.checked.add(id(node))
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML reports it
                    continue
                if first is not None:
                    self.fail(key_node.start_mark, f"{_short(key)} at line {line} repeats the key from line {first}; "
                                                   "each key may appear once in a mapping")
                seen[key] = line
        super().flatten_mapping(node)

    def scalar(self, node: Any, convert: Any, kind: str) -> Any:
        try:
            return convert(self, node)
        except (ValueError, KeyError, OverflowError):
            self.fail(node.start_mark, f"{_short(node.value)} is not a valid {kind}; write a plain {kind} or quote the text")

    def construct_yaml_float(self, node: Any) -> float:
        value = self.scalar(node, yaml.SafeLoader.construct_yaml_float, "number")
        if not math.isfinite(value):
            m = node.start_mark
            self.fail(m, f"non-finite number {_short(node.value)[1:-1]} at line {m.line + 1}, column {m.column + 1}; use a finite number")
        return value

    def refuse(self, node: Any) -> NoReturn:
        self.fail(node.start_mark, f"the tag {node.tag} is not supported; use plain mappings, lists and scalars")


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))
_Loader.add_constructor("tag:yaml.org,2002:int", lambda ld, n: ld.scalar(n, yaml.SafeLoader.construct_yaml_int, "integer"))
_Loader.add_constructor("tag:yaml.org,2002:bool", lambda ld, n: ld.scalar(n, yaml.SafeLoader.construct_yaml_bool, "boolean"))
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _Loader.refuse)


def _decode(source: bytes | str, path: str) -> str:
    """Text of the file: a size check, BOM-aware decoding and a check for control characters."""
    big = isinstance(source, bytes) or len(source) > MAX_BYTES
    if (len(source) if big else len(source.encode("utf-8", "surrogatepass"))) > MAX_BYTES:
        raise DagError(f"{path}: the file is larger than {MAX_BYTES:,} bytes; DAG files must be at most that size")
    if isinstance(source, bytes):
        codec = next((c for bom, c in _BOMS if source.startswith(bom)), "utf-8")
        try:
            source = source.decode(codec)
        except UnicodeDecodeError as e:
            head = source[:e.start].decode(codec, "replace")
            line, col = head.count("\n") + 1, len(head) - head.rfind("\n")
            hint = " (UTF-16 and UTF-32 files need a byte-order mark)" if b"\0" in source else ""
            raise DagError(f"{path}:{line}:{col}: byte 0x{source[e.start]:02x} at offset {e.start} is not valid "
                           f"{codec.removesuffix('-sig').upper()}{hint}; DAG files must be UTF-8 text") from None
    text = source.removeprefix("\ufeff")
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        i = bad.start()
        line, col = text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)
        hint = " (a UTF-16 file without a byte-order mark?)" if bad.group() == "\0" else ""
        raise DagError(f"{path}:{line}:{col}: character U+{ord(bad.group()):04X} is not allowed{hint}; "
                       "DAG files are printable text, tabs and newlines")
    return text


def read_yaml(source: bytes | str, path: str) -> tuple[Any, yaml.Node]:
    """The data of one YAML document and its composed root node (for line numbers: node.start_mark.line)."""
    loader = _Loader(_decode(source, path), path)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file
            mark = yaml.Mark(path, 0, 0, 0, None, None)
            return None, yaml.ScalarNode("tag:yaml.org,2002:null", "", mark, mark)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as e:
        context = f" ({e.context} at line {e.context_mark.line + 1})" if e.context and e.context_mark else ""
        raise DagError(f"{_at(path, e.problem_mark)}: malformed YAML: {e.problem or e}{context}; "
                       "a DAG file is one YAML document of mappings, lists and scalars") from None
    except DagError:
        raise
    except RecursionError:
        raise DagError(f"{_at(path, loader.get_mark())}: nesting is too deep; "
                       f"DAG files nest mappings and lists at most {MAX_DEPTH} deep") from None
    except Exception as e:  # a backstop: PyYAML raises e.g. ValueError for "\UFFFFFFFF"
        raise DagError(f"{_at(path, loader.get_mark())}: unreadable YAML ({e}); "
                       "a DAG file is one YAML document of mappings, lists and scalars") from None
    finally:
        loader.dispose()


def number(value: Any, where: str) -> float:
    """A finite float from a YAML int or float (not a bool), or a string like '1e-1', 'pi', '2pi', '0.5*pi'."""
    result = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            pass
    elif isinstance(value, str):
        text = value.strip()
        if m := _PI.fullmatch(text):
            result = float(m.group(1) + (m.group(2) or "1")) * math.pi
        elif _DECIMAL.fullmatch(text):
            result = float(text)
    if result is None or not math.isfinite(result):
        raise DagError(f"{where}: expected a finite number, got {_short(value)}; "
                       "use a number such as 0.5 or 1e-1, or a multiple of pi such as pi, 2pi, 0.5*pi or -pi")
    return result
