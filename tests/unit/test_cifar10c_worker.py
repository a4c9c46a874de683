"""A worker writes each unit's block into its partial with ``pwrite``: its rows only, then its marker."""

from __future__ import annotations

import numpy as np
import pytest

from study.cifar10c.worker import PARTIAL_SUFFIX, corrupt_unit, fill_unit, marker, run_units


def make_partial(path, rows: int) -> None:
    blank = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 32, 32, 3))
    blank[:] = 7  # anything a block write must leave alone
    del blank


def test_fill_unit_writes_its_rows_and_marks_them(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    data = tmp_path / f"snow.1-abc{PARTIAL_SUFFIX}"
    make_partial(data, 3 * 5)
    fill_unit(images, str(data), 1, "snow", 4, 9, None)  # block 1: rows 5..9
    got = np.load(data)
    assert np.array_equal(got[5:10], corrupt_unit(images, "snow", 4, 9, None))
    assert (got[:5] == 7).all() and (got[10:] == 7).all()
    assert marker(data, 4).exists() and not marker(data, 1).exists()


def test_run_units_times_each_unit_and_refuses_a_block_past_the_end(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    source = tmp_path / "source.npy"
    np.save(source, images)
    data = tmp_path / f"fog.1-abc{PARTIAL_SUFFIX}"
    make_partial(data, 2 * 4)
    timings = run_units(str(source), [("fog", 2, str(data), 0), ("fog", 5, str(data), 1)], 3, None)
    assert [(t.name, t.severity) for t in timings] == [("fog", 2), ("fog", 5)]
    assert all(t.unit_s >= t.kernel_s >= 0 for t in timings)
    assert np.array_equal(np.load(data)[4:], corrupt_unit(images, "fog", 5, 3, None))
    with pytest.raises(ValueError, match="no room for block 2"):
        fill_unit(images, str(data), 2, "fog", 1, 3, None)
    assert not marker(data, 1).exists()
