"""study.yamlfiles: every YAML freqstudy reads is bounded (depth, aliases, size, file kind),
merge keys work and what they set is validated like any other key, and each refusal is one
line naming the file (and the line where known)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import yaml

from study import yamlfiles
from study.config import TrialConfig, parse_overrides
from study.search.space_parser import load_space

SPACE_HEAD = "objectives:\n  - {metric: val/clean_acc, direction: maximize}\n"


def laughs(levels: int = 9, fan: int = 9, use: str = "x") -> str:
    """Nested aliases: ``fan ** levels`` values from a few hundred bytes ("billion laughs")."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fan)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{use}: *l{levels - 1}\n"


def deep(n: int = 5000) -> str:
    return "fixed: " + "[" * n + "]" * n + "\n"


def test_billion_laughs_is_refused_at_once_in_bounded_memory():
    text = laughs()
    assert len(text) < 1000
    tracemalloc.start()
    try:
        with pytest.raises(yamlfiles.LimitError, match="more than 100,000 values"):
            yamlfiles.safe_load(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak


def test_merge_key_laughs_are_counted_too():
    """Merges copy the merged pairs into each mapping: nested ``<<:`` lists grow like aliases."""
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 12):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}], k{i}: [{', '.join([f'*m{i - 1}'] * 8)}]}}")
    with pytest.raises(yamlfiles.LimitError, match="values once its aliases are resolved"):
        yamlfiles.safe_load("\n".join(lines) + "\n")


def test_deep_nesting_is_one_error_not_a_recursion_error():
    with pytest.raises(yamlfiles.LimitError, match="nested more than 64 levels") as info:
        yamlfiles.safe_load(deep())
    assert info.value.problem_mark.line == 0
    assert yamlfiles.safe_load(deep(60)) == {"fixed": eval("[" * 60 + "]" * 60)}


def test_a_recursive_alias_is_refused():
    """``&a [*a]`` composes into a cycle: anything that walks it never ends."""
    with pytest.raises(yamlfiles.LimitError, match="recursive structure"):
        yamlfiles.safe_load("a: &a [1, *a]\n")
    with pytest.raises(yamlfiles.LimitError, match="recursive structure"):
        yamlfiles.safe_load("a: &a {b: *a}\n")


def test_shared_aliases_within_the_bound_still_load():
    text = "base: &b {lr: 0.1, epochs: 3}\none: *b\ntwo: *b\n"
    assert yamlfiles.safe_load(text) == {
        "base": {"lr": 0.1, "epochs": 3},
        "one": {"lr": 0.1, "epochs": 3},
    } | {"two": {"lr": 0.1, "epochs": 3}}


def test_merged_keys_may_be_overridden_but_written_keys_not_repeated():
    text = "d: &d {lr: 0.1, epochs: 3}\ntrain: {<<: *d, lr: 0.4}\n"
    assert yamlfiles.safe_load(text)["train"] == {"lr": 0.4, "epochs": 3}
    with pytest.raises(yamlfiles.DuplicateKeyError, match="duplicate key 'lr' \\(first at line 1\\)"):
        yamlfiles.safe_load("lr: 1\nlr: 2\n")


def test_a_merge_into_a_nested_anchor_is_not_a_false_duplicate():
    """The old check ran on nodes that a merge had already flattened: a mapping merged into
    before its own turn showed its merged key twice and was refused as a duplicate."""
    text = textwrap.dedent(
        """\
        base: &base {a: 1}
        outer:
          inner: &mid {<<: *base, a: 2}
        top: {<<: *mid}
        """
    )
    tree = yamlfiles.safe_load(text)
    assert tree["top"] == {"a": 2} and tree["outer"]["inner"] == {"a": 2}


def test_files_are_bounded_and_must_be_regular(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * yamlfiles.MAX_BYTES + "\n")
    with pytest.raises(ValueError, match=r"config file .*big.yaml: larger than 1024 KiB"):
        yamlfiles.load_file(big, "config file")
    with pytest.raises(ValueError, match="is a folder"):
        yamlfiles.load_file(tmp_path, "config file")
    with pytest.raises(ValueError, match="/dev/zero: not a regular file"):
        yamlfiles.load_file("/dev/zero", "config file")  # would be read forever
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        yamlfiles.load_file(fifo, "config file")  # open() would block for a writer


def test_load_file_is_one_line_naming_file_and_line(tmp_path):
    cases = {
        "laughs.yaml": (laughs(), "line 1: expands to more than 100,000 values"),
        "deep.yaml": (deep(), "line 1: nested more than 64 levels deep"),
        "twice.yaml": ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a' (first at line 1)"),
        "bad.yaml": ("a: [1, 2\n", "not valid YAML ("),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError) as info:
            yamlfiles.load_file(tmp_path / name, "config file")
        message = str(info.value)
        assert message.startswith(f"config file {tmp_path / name}") and expected in message, message
        assert "\n" not in message


def test_config_files_go_through_the_bounded_loader(tmp_path):
    """A config whose eval.corruptions is a billion laughs: the old loader built it (shared
    lists) and the error message's repr of the value never finished."""
    path = tmp_path / "trial.yaml"
    path.write_text(laughs(use="eval").replace("\neval: *l8", "\neval: {corruptions: *l8}"))
    with pytest.raises(ValueError, match=f"config file {path} line 1: expands to more than"):
        TrialConfig.from_yaml(path)


def test_a_merge_key_in_a_config_file_is_validated_like_any_key(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("model:\n  <<: &big {width: 1000000}\n  stem_kernel: 3\n")
    with pytest.raises(ValueError, match="config model.width: 1000000 needs .* allowed 1..") as info:
        TrialConfig.from_yaml(path)
    assert "\n" not in str(info.value)


def test_overrides_are_bounded_and_given_once():
    with pytest.raises(ValueError, match="override eval.corruptions: expands to more than"):
        parse_overrides(["eval.corruptions=" + "{" + laughs().replace("\n", ", ").rstrip(", ") + "}"])
    with pytest.raises(
        ValueError, match=r"override train.lr: given twice \(train.lr=0.1 and 'train.lr=0.2'\)"
    ):
        parse_overrides(["train.lr=0.1", "train.lr=0.2"])
    assert parse_overrides(["train.lr=0.1", "eval.corruptions=[fog]"]) == {
        "train.lr": 0.1,
        "eval.corruptions": ["fog"],
    }


def test_space_files_with_hostile_yaml_end_in_one_line_quickly(tmp_path):
    """The issue's two space files, each loaded in a fresh interpreter with a time limit: the
    old loader grew past gigabytes on the first and printed a 3,000-line RecursionError on
    the second."""
    (tmp_path / "laughs.yaml").write_text(SPACE_HEAD + laughs(use="fixed"))
    (tmp_path / "deep.yaml").write_text(SPACE_HEAD + deep())
    code = textwrap.dedent(
        """\
        import sys, tracemalloc
        from study.search.space_parser import load_space
        tracemalloc.start()
        try:
            load_space(sys.argv[1])
        except ValueError as e:
            print(e)
        print(tracemalloc.get_traced_memory()[1])
        """
    )
    expected = {
        "laughs.yaml": "line 1: expands to more than 100,000",
        "deep.yaml": "line 3: nested more than 64",
    }
    for name, text in expected.items():
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
        message, peak = r.stdout.splitlines()
        assert message.startswith(f"space {tmp_path / name} ") and text in message, message
        assert int(peak) < 50_000_000, peak


def test_a_merge_key_in_a_space_is_validated_and_points_at_its_line(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(SPACE_HEAD + "fixed:\n  <<: &big\n    model.width: 1000000\n  train.epochs: 1\n")
    with pytest.raises(ValueError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"space {path} line 5: fixed[model.width]: 1000000 needs"), message
    epochs = tmp_path / "epochs.yaml"
    epochs.write_text(SPACE_HEAD + "defaults: &d {train.epochs: 1000000000}\nfixed: {<<: *d}\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_space(epochs)  # the anchor's own section is still a section
    epochs.write_text(SPACE_HEAD + "fixed: {<<: {train.epochs: 1000000000}}\n")
    with pytest.raises(
        ValueError, match=r"line 3: fixed\[train.epochs\]: 1000000000 is not allowed; allowed 1..10000"
    ):
        load_space(epochs)


def test_a_directory_given_as_space_is_named_as_such(tmp_path):
    with pytest.raises(ValueError, match=f"space {tmp_path}: is a directory"):
        load_space(tmp_path)


def test_the_cluster_file_reads_through_the_bounded_loader():
    """cluster.yaml (Ray's launcher file) is the one YAML of the repository not read by
    freqstudy itself; it must still be within the bounds the project sets."""
    from pathlib import Path

    tree = yamlfiles.load_file(Path(__file__).resolve().parents[2] / "cluster.yaml", "cluster file")
    assert tree == yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster.yaml").read_text())
