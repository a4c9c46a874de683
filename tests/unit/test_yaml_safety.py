"""The YAML a user hands freqstudy (a trial config, a search space) builds no Python objects:
a file whose ``!!python/object/apply`` tag (on a value, or on a key) would create a marker
folder is refused in one line naming the file, and the marker never appears (PyYAML's unsafe
loader creates it)."""

from __future__ import annotations

import uuid

import pytest
import yaml

from study.config import TrialConfig
from study.search.space_parser import load_space

PAYLOADS = {
    "value": "seed: !!python/object/apply:os.mkdir [{marker!r}]\n",
    "key": "? !!python/object/apply:os.mkdir [{marker!r}]\n: 1\n",  # keys are built to find duplicates
}


@pytest.mark.parametrize("where", sorted(PAYLOADS))
@pytest.mark.parametrize("read", [TrialConfig.from_yaml, load_space], ids=["config", "space"])
def test_a_yaml_file_that_would_run_code_is_refused(tmp_path, read, where):
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.yaml"
    path.write_text(PAYLOADS[where].format(marker=str(marker)))
    with pytest.raises(ValueError, match="crafted.yaml.*not valid YAML") as info:
        read(str(path))
    assert "\n" not in str(info.value)
    assert not marker.exists()
    yaml.unsafe_load(path.read_text())  # the payload is real
    assert marker.exists()


@pytest.mark.parametrize("read", [TrialConfig.from_yaml, load_space], ids=["config", "space"])
def test_a_scalar_key_that_would_import_code_is_refused(tmp_path, monkeypatch, read):
    """The duplicate-key check builds each written scalar key; one tagged ``!!python/module:``
    would import (so run) a module that an unsafe constructor finds on the path."""
    marker = tmp_path / "marker"
    module = f"freqstudy_yaml_key_payload_{uuid.uuid4().hex}"  # new each time: imports are cached
    (tmp_path / f"{module}.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "crafted.yaml"
    path.write_text(f"? !!python/module:{module}\n: 1\n")
    with pytest.raises(ValueError, match="crafted.yaml") as info:
        read(str(path))
    assert "\n" not in str(info.value)
    assert not marker.exists()
    yaml.unsafe_load(path.read_text())  # the payload is real
    assert marker.exists()
