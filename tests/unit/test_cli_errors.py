"""The command's error lines: a usage error is one line naming the flag, exit 2, before
anything is read, started or written; an OS error (a full disk) is one line naming the
path and the errno, exit 1."""

from __future__ import annotations

import errno

import pytest

from study.cli import main, os_error_line


@pytest.mark.parametrize(
    "command",
    [
        ["corrupt", "--data-dir", "nowhere", "--workers", "1"],
        ["report", "--study", "s", "--tracking-uri", "http://127.0.0.1:9"],  # nothing listens there
    ],
    ids=["corrupt", "report"],
)
def test_out_that_is_a_file_is_one_line_naming_the_flag(command, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    assert main([*command, "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"freqstudy {command[0]}: error: --out {target}: is a file; give a folder\n"
    assert target.read_text() == "keep me"


def test_os_errors_are_one_line_naming_the_path_and_errno():
    e = OSError(errno.ENOSPC, "No space left on device", "/data/c/labels.npy")
    assert os_error_line(e) == "/data/c/labels.npy: [Errno 28] No space left on device (ENOSPC)"
    e = PermissionError(errno.EACCES, "Permission denied", "/a", None, "/b")
    assert os_error_line(e) == "/a -> /b: [Errno 13] Permission denied (EACCES)"
    assert os_error_line(OSError(errno.EIO, "Input/output error")) == "[Errno 5] Input/output error (EIO)"
    assert os_error_line(OSError("no errno\nsecond line")) == "no errno"


def test_an_os_error_in_a_command_exits_1_with_one_line(monkeypatch, tmp_path, capsys):
    import study.cli.corrupt as corrupt

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "c" / "labels.npy"))

    monkeypatch.setattr(corrupt, "run", full_disk)
    assert main(["corrupt", "--data-dir", "d", "--out", str(tmp_path / "c")]) == 1
    assert capsys.readouterr().err == (
        f"freqstudy corrupt: error: {tmp_path}/c/labels.npy: [Errno 28] No space left on device (ENOSPC)\n"
    )
