"""study.tracking.runs' model folder on local files (no server): what ``write_model`` writes
``read_model`` rebuilds exactly, and weights that are not the ones the manifest's sha256
names are refused in one line naming the folder, even when they fit the config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from study.config import TrialConfig
from study.engine.model_folder import MODEL_MANIFEST, MODEL_WEIGHTS, read_model, write_model
from study.engine.trial import build_model


def small_model(seed: int) -> tuple[torch.nn.Module, TrialConfig]:
    config = TrialConfig.from_flat({"model.width": 4, "frequency.mode": "fixed", "device": "cpu"})
    torch.manual_seed(seed)
    return build_model(config).eval(), config


def test_a_written_model_reads_back_exactly(tmp_path):
    model, config = small_model(0)
    write_model(tmp_path / "model", model, config)
    back = read_model(tmp_path / "model", source="here")
    assert not back.training
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_weights_other_than_the_manifest_names_are_refused(tmp_path):
    model, config = small_model(0)
    folder = tmp_path / "model"
    write_model(folder, model, config)
    other, _ = small_model(1)  # same shapes and names: only the hash tells them apart
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(folder / MODEL_WEIGHTS))
    fits = build_model(config)
    fits.load_state_dict(other.state_dict(), strict=True)  # they would load
    with pytest.raises(ValueError, match=rf"^run x: {MODEL_WEIGHTS} does not match the sha256") as info:
        read_model(folder, source="run x")
    assert "\n" not in str(info.value)
    manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    del manifest["weights_sha256"]
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the sha256"):
        read_model(folder, source="run x")
