"""Reading the YAML a user writes (trial configs, search spaces, ``--set`` values) strictly and
within bounds: every YAML freqstudy reads goes through here.

PyYAML's ``safe_load`` runs no code, but it is not bounded: a 1 KB file of nested aliases
("billion laughs") expands to billions of values once anything walks it, a 5,000-deep list
ends in a ``RecursionError``, and it lets the last of two equal keys win without a word. Here
a document is composed into nodes first, with its nesting depth limited while it is read
(``MAX_DEPTH``); then, before anything is built from it, the size it would have with every
alias expanded is counted on the node graph (memoised, so a billion laughs is counted in
microseconds, never expanded) and refused beyond ``MAX_NODES``; an alias to a collection
that contains it (a recursive structure) is refused; a mapping that writes a key twice is a
``DuplicateKeyError`` naming the key and both lines. Merge keys (``<<: *defaults``) work as
YAML intends: keys written beside a merge override the merged ones; the merged values count
towards the size limit and reach the caller like any other key, to be validated as such.
Files are read as UTF-8 text, at most ``MAX_BYTES``, and only from regular files (a folder,
a FIFO or ``/dev/zero`` is one line). Every refusal is a ``yaml.MarkedYAMLError`` with a
position, so callers report it like any other YAML error; :func:`load_file` turns any of them
into one line naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "DuplicateKeyError",
    "LimitError",
    "compose",
    "construct",
    "error_line",
    "load_file",
    "read_text",
    "safe_load",
]

# The project's own files are a few KB, nest at most 5 deep and hold a few hundred values;
# these limits are orders of magnitude above that and orders of magnitude below trouble.
MAX_BYTES = 1 << 20  # 1 MiB of text
MAX_DEPTH = 64  # nested collections; PyYAML recurses ~3 frames per level, Python allows ~1000
MAX_NODES = 100_000  # values once every alias (and merge) is expanded; ~100 MB to walk at worst

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that writes ``key`` twice: at ``first_line`` and again at ``line`` (both 1-based)."""

    def __init__(self, key: Any, line: int, first_line: int, mark: yaml.Mark | None) -> None:
        super().__init__(None, None, f"duplicate key {key!r} (first at line {first_line})", mark)
        self.key, self.line, self.first_line = key, line, first_line


class LimitError(yaml.MarkedYAMLError):
    """A document beyond a bound (depth, expanded size) or recursive; ``problem`` says which."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` whose composer refuses nesting deeper than ``MAX_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitError(
                    f"nested more than {MAX_DEPTH} levels deep; allowed at most {MAX_DEPTH}",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Expanded size within ``MAX_NODES``, no recursive alias, no key written twice.

    The node graph shares an aliased node wherever it is used, so the expanded size is a
    memoised sum over it: linear in the text, whatever the expansion. Depth is already
    bounded by the composer, so recursion here is shallow.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    scalars = yaml.constructor.SafeConstructor()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise LimitError(
                "an alias refers to a collection that contains it (a recursive structure); not allowed",
                node.start_mark,
            )
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, scalars)
        total = 1
        for child in _children(node):
            total = min(total + size(child), MAX_NODES + 1)  # capped: 9**9 laughs stay small ints
        open_nodes.discard(key)
        sizes[key] = total
        return total

    total = size(root)
    if total > MAX_NODES:
        raise LimitError(
            f"expands to more than {MAX_NODES:,} values once its aliases are resolved "
            f"(nested aliases, a 'billion laughs'?); allowed at most {MAX_NODES:,}",
            root.start_mark,
        )


def _check_unique_keys(node: yaml.MappingNode, scalars: yaml.constructor.SafeConstructor) -> None:
    """Keys written in this mapping (not merged into it) must not repeat."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue  # merged keys may be overridden; a complex key is the constructor's to judge
        key = scalars.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise DuplicateKeyError(key, line, first, key_node.start_mark)
        seen[key] = line


def compose(text: str) -> yaml.Node | None:
    """The document's node graph (None for an empty document), checked against every bound.

    Raises:
        yaml.YAMLError: not YAML, more than one document, ``LimitError``, ``DuplicateKeyError``.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None:
        _check_graph(node)
    return node


def construct(node: yaml.Node | None) -> Any:
    """Plain Python values of a :func:`compose` node (safe tags only); merge keys resolved.

    Resolving a merge rewrites the mapping nodes in place (the merged pairs join the
    mapping's own, before them), so a :func:`compose` graph read for key positions after
    this shows the merged keys at the lines where they are written.
    """
    if node is None:
        return None
    return yaml.constructor.SafeConstructor().construct_document(node)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` within the bounds, refusing a key written twice (``yaml.YAMLError``)."""
    return construct(compose(text))


def error_line(e: yaml.YAMLError) -> tuple[int | None, str]:
    """``(1-based line or None, one-line problem)`` of a YAML error."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    if context and not isinstance(e, (LimitError, DuplicateKeyError)):
        problem = f"{context}: {problem}"
    return (mark.line + 1 if mark is not None else None), " ".join(str(problem).split())


def read_text(path: str | os.PathLike, what: str) -> str:
    """The file's UTF-8 text; ``ValueError`` ``"<what> <path>: ..."`` when it is a folder, not a
    regular file, over ``MAX_BYTES`` or not UTF-8.

    A missing file raises ``FileNotFoundError`` (callers say it their way). At most
    ``MAX_BYTES + 1`` bytes are read, whatever the file claims.
    """
    p = Path(path)
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ValueError(f"{what} {path}: is a folder; give a YAML file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what} {path}: not a regular file (a device, FIFO or socket); give a YAML file")
    with open(p, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{what} {path}: larger than {MAX_BYTES // 1024} KiB; allowed at most that")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} {path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None


def load_file(path: str | os.PathLike, what: str) -> Any:
    """A YAML file's values; every refusal is one ``ValueError`` line naming ``what``, the file
    and, where known, the line: ``config file a.yaml line 3: duplicate key 'lr' (first at line 2)``.

    A missing file raises ``FileNotFoundError``.
    """
    text = read_text(path, what)
    try:
        return safe_load(text)
    except yaml.YAMLError as e:
        line, problem = error_line(e)
        where = f" line {line}" if line else ""
        if not isinstance(e, (LimitError, DuplicateKeyError)):
            problem = f"not valid YAML ({problem})"
        raise ValueError(f"{what} {path}{where}: {problem}") from None
