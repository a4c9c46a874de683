"""Frost works offline on a fresh install: the textures ship in ``study/corruptions/frost/``.

No flag, no ``FREQSTUDY_FROST_DIR``, an empty ``FREQSTUDY_HOME`` and no network
must still give the frost corruption, identical to the one drawn from the
shared copy of the original textures; a wrong explicit folder is one line that
names the flag the user typed.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from study.corruptions import weather


def random_images(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture
def offline_fresh_home(tmp_path: Path, monkeypatch) -> Path:
    """An empty FREQSTUDY_HOME, no FREQSTUDY_FROST_DIR, no decoded textures, and no network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FREQSTUDY_HOME", str(home))
    monkeypatch.delenv(weather.FROST_ENV, raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    # Textures decoded by an earlier test would hide a missing file: decode from disk here.
    weather._load_textures.cache_clear()
    return home


def test_frost_offline_uses_packaged_textures(offline_fresh_home: Path):
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("127.0.0.1", 9))  # the guard is really in place
    out = weather.frost(random_images(), 3, np.random.default_rng(7))
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
    assert not (out == random_images()).all()
    assert list(offline_fresh_home.iterdir()) == []  # nothing fetched or cached into the home


def test_packaged_textures_match_the_shared_ones(offline_fresh_home: Path, frost_dir: Path):
    for severity in range(1, 6):
        packaged = weather.frost(random_images(seed=severity), severity, np.random.default_rng(severity))
        shared = weather.frost(
            random_images(seed=severity), severity, np.random.default_rng(severity), frost_dir=frost_dir
        )
        np.testing.assert_array_equal(packaged, shared, err_msg=f"severity {severity}")


def test_bad_explicit_folder_is_one_line_naming_the_flag(tmp_path: Path):
    (tmp_path / "frost1.png").write_bytes(b"")  # present but the others are missing
    with pytest.raises(ValueError) as info:
        weather.frost(random_images(2), 1, np.random.default_rng(0), frost_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"--frost-dir / eval.frost_dir {tmp_path}: frost2.png, frost3.png")
    assert "not found" in message and "\n" not in message and "frost_dir=" not in message
