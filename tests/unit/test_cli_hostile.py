"""Hostile input at the command line: each refusal is one line on stderr naming the flag, key or
file and what is allowed, exit 2, before any data is read or server started; nothing prints a
traceback."""

from __future__ import annotations

import io

import numpy as np
import pytest

from study.cli import main

DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: connection refused at once


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(
    "argv",
    [
        ["pareto", "--study", "s"],
        ["report", "--study", "s"],
        ["compare", "a", "b", "--study", "s"],
        ["inspect", "0123abcd"],
        ["fourier", "0123abcd"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_reading_a_server_checks_it_first(argv, capsys, tmp_path, monkeypatch):
    """The issue's pareto case ended in an MlflowException traceback after 21 s."""
    monkeypatch.chdir(tmp_path)  # report's default --out folder
    err = one_line_error(capsys, [*argv, "--tracking-uri", DEAD])
    assert err == (
        f"freqstudy {argv[0]}: error: tracking server {DEAD} does not answer "
        "(GET /health: connection refused); "
        "start it or leave --tracking-uri out for the local store"
    )


def test_compare_names_a_negative_seed(capsys):
    """It said the runs 'were not evaluated on the same images'."""
    err = one_line_error(capsys, ["compare", "a", "b", "--study", "s", "--seed", "-5"])
    assert err == "freqstudy compare: error: --seed -5: allowed integers 0..4294967295"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed", "-5"], "--seed: -5 is out of range; allowed integers 0..4294967295"),
        (["--split-seed", "-1"], "--split-seed: -1 is out of range; allowed integers 0..4294967295"),
        (["--workers", "100000"], "--workers: 100000 is not allowed; allowed 0.."),
    ],
)
def test_corrupt_names_its_flags(flags, message, capsys, tmp_path):
    """A negative seed said only 'expected non-negative integer', after the data was loaded."""
    err = one_line_error(
        capsys, ["corrupt", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path), *flags]
    )
    assert err.startswith(f"freqstudy corrupt: error: {message}"), err


def test_a_directory_or_a_device_given_as_space(capsys, tmp_path):
    err = one_line_error(capsys, ["run", "--space", str(tmp_path), "--study", "s"])
    assert err == (
        f"freqstudy run: error: space {tmp_path}: is a directory; "
        "give a space file (.yaml) or a name in search_spaces/"
    )
    err = one_line_error(capsys, ["run", "--space", "/dev/zero", "--study", "s"])
    assert "space /dev/zero: not a regular file" in err


def test_train_refuses_sizes_and_hostile_config_in_one_line(capsys, tmp_path):
    err = one_line_error(capsys, ["train", "--set", "model.width=1000000"])
    assert (
        err.startswith("freqstudy train: error: config model.width: 1000000 needs ") and "allowed 1.." in err
    )
    err = one_line_error(capsys, ["train", "--set", "train.epochs=1000000000"])
    assert err == "freqstudy train: error: config train.epochs: 1000000000 is not allowed; allowed 1..10000"
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    err = one_line_error(capsys, ["train", "--config", str(deep)])
    assert err == (
        f"freqstudy train: error: config file {deep} line 1: nested more than 64 levels deep; "
        "allowed at most 64"
    )
    err = one_line_error(capsys, ["train", "--set", "train.lr=0.1", "--set", "train.lr=0.2"])
    assert "override train.lr: given twice" in err


def test_report_reads_a_logged_array_within_its_size(tmp_path):
    """A learned-mode trial's alpha.npy whose header declares 10**12 floats: numpy tried to
    allocate 7.3 TiB (a MemoryError traceback); now one line naming the run and the file."""
    from study.tracking.queries import ALPHA_ARTIFACT, _alpha_from_artifacts

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    crafted = tmp_path / ALPHA_ARTIFACT
    crafted.write_bytes(buf.getvalue())

    def download(run_id, name, workdir, client=None):  # what study.tracking.queries.download_artifact returns
        return crafted if name == ALPHA_ARTIFACT else None

    with pytest.raises(ValueError, match=r"run r1: alpha.npy: declares 8,000,000,000,000 bytes"):
        _alpha_from_artifacts("r1", None, tmp_path, download)
    np.save(crafted, np.array([0.2, 0.9]))
    assert _alpha_from_artifacts("r1", None, tmp_path, download).tolist() == [0.2, 0.9]


def test_report_skips_a_metrics_file_nested_past_the_json_parser(tmp_path):
    """A metrics.json of '[[[[...' raised a RecursionError traceback out of the report."""
    from study.tracking.queries import _alpha_from_artifacts

    deep = tmp_path / "metrics.json"
    deep.write_text("[" * 50_000)

    def download(run_id, name, workdir, client=None):
        return deep if name == "metrics.json" else None

    assert _alpha_from_artifacts("r1", None, tmp_path, download) is None


@pytest.mark.parametrize(
    "argv, name",
    [
        (["inspect", ""], "RUN_ID"),
        (["fourier", "../../etc"], "RUN_ID"),
        (["compare", "a b", "b", "--study", "s"], "RUN_A"),
        (["compare", "a", "", "--study", "s"], "RUN_B"),
    ],
    ids=["inspect-empty", "fourier-path", "compare-space", "compare-empty"],
)
def test_a_malformed_run_id_is_named_before_any_server(argv, name, capsys):
    """``inspect ''`` asked the server for an empty id and printed nothing for over two minutes."""
    err = one_line_error(capsys, [*argv, "--tracking-uri", DEAD])
    assert f"error: {name} " in err and "not a run id; allowed 1-64 letters" in err, err


def test_report_out_on_a_device_is_not_called_a_file(capsys):
    err = one_line_error(capsys, ["report", "--study", "s", "--out", "/dev/null", "--tracking-uri", DEAD])
    assert err.endswith("--out /dev/null: is not a folder (a device, socket or pipe); give a folder"), err
