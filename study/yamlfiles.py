"""Reading the YAML files a user writes (trial configs, search spaces) strictly.

PyYAML's ``safe_load`` lets the last of two equal keys win without a word, so
``lr: 0.1`` written twice in a config quietly means the second. Here a mapping
that repeats a key is an error naming the key and both lines
(``DuplicateKeyError``, a ``yaml.YAMLError`` with a position, so callers report
it like any other YAML error). Merge keys (``<<: *defaults``) still work: keys
written beside a merge override the merged ones, as YAML intends. Files are read
as UTF-8 text, with a one-line error naming the file and the first bad byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DuplicateKeyError", "UniqueKeyLoader", "read_text", "safe_load"]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that writes ``key`` twice: at ``first_line`` and again at ``line`` (both 1-based)."""

    def __init__(self, key: Any, line: int, first_line: int, mark: yaml.Mark | None) -> None:
        super().__init__(None, None, f"duplicate key {key!r} (first at line {first_line})", mark)
        self.key, self.line, self.first_line = key, line, first_line


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping repeating a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # merged keys may be overridden by the ones written here
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise DuplicateKeyError(key, line, first, key_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKeyError`` for a repeated key."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


def read_text(path: str | os.PathLike, what: str) -> str:
    """The file's UTF-8 text; ``ValueError`` ``"<what> <path>: ..."`` when it is a folder or not UTF-8.

    A missing file raises ``FileNotFoundError`` (callers say it their way).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {path}: is a folder; give a YAML file")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} {path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None
