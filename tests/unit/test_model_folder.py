"""study.tracking.runs' model folder on local files (no server): what ``write_model`` writes
``read_model`` rebuilds exactly, and weights that are not the ones the manifest's sha256
names are refused in one line naming the folder, even when they fit the config."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from study.config import TrialConfig
from study.engine.model_folder import MODEL_MANIFEST, MODEL_WEIGHTS, param_text, read_model, write_model
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


def _edit_mode(folder, *, rehash: bool) -> None:
    """``mode: fixed`` -> ``mode: free`` in config.yaml; with ``rehash`` the manifest's digest too."""
    path = folder / "config.yaml"
    text = path.read_text()
    assert "mode: fixed" in text
    path.write_text(text.replace("mode: fixed", "mode: free"))
    if rehash:
        manifest = json.loads((folder / MODEL_MANIFEST).read_text())
        manifest["config_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))


def logged_params(config: TrialConfig) -> dict[str, str]:
    return {k: param_text(v) for k, v in config.to_flat().items()}


def test_an_edited_config_is_refused_by_the_manifest_sha256(tmp_path):
    model, config = small_model(0)
    folder = tmp_path / "model"
    write_model(folder, model, config)
    _edit_mode(folder, rehash=False)
    with pytest.raises(ValueError, match=r"^run x: config\.yaml does not match the sha256") as info:
        read_model(folder, source="run x")
    assert "\n" not in str(info.value)


def test_a_config_edited_with_its_digest_is_refused_by_the_runs_params(tmp_path):
    model, config = small_model(0)
    folder = tmp_path / "model"
    write_model(folder, model, config)
    _edit_mode(folder, rehash=True)
    read_model(folder, source="run x")  # the manifest alone cannot tell: the run's params can
    with pytest.raises(ValueError) as info:
        read_model(folder, source="run x", params=logged_params(config))
    message = str(info.value)
    assert "\n" not in message and message.startswith("run x: config.yaml says frequency.mode=free")
    assert "the run's params say frequency.mode=fixed" in message


def test_a_model_without_a_config_digest_needs_its_runs_params(tmp_path):
    model, config = small_model(0)
    folder = tmp_path / "model"
    write_model(folder, model, config)
    manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    del manifest["config_sha256"]  # as written before the config was covered
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"^run x: freqstudy-model\.json has no config_sha256"):
        read_model(folder, source="run x")
    with pytest.raises(ValueError, match="the run logged no params"):
        read_model(folder, source="run x", params={})
    back = read_model(folder, source="run x", params=logged_params(config))
    assert back.stem.settings.mode == "fixed"
    _edit_mode(folder, rehash=False)
    with pytest.raises(ValueError, match="config.yaml says frequency.mode=free"):
        read_model(folder, source="run x", params=logged_params(config))


def written(tmp_path):
    model, config = small_model(0)
    folder = tmp_path / "model"
    write_model(folder, model, config)
    return folder


def test_an_oversized_or_too_deep_manifest_is_refused_in_one_line(tmp_path):
    folder = written(tmp_path)
    manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    (folder / MODEL_MANIFEST).write_text(json.dumps({**manifest, "pad": "x" * (1 << 20)}))
    too_big = r"^run x: freqstudy-model\.json is 1\.0 MB; at most 64\.0 KB is read$"
    with pytest.raises(ValueError, match=too_big):
        read_model(folder, source="run x")
    (folder / MODEL_MANIFEST).write_text("[" * 50_000)  # 50 KB: within the size, past json's recursion
    with pytest.raises(ValueError, match=r"^run x: freqstudy-model\.json unreadable") as info:
        read_model(folder, source="run x")
    assert "\n" not in str(info.value)


def test_weights_larger_than_the_machine_are_refused_from_their_size(tmp_path):
    from study import limits

    folder = written(tmp_path)
    with open(folder / MODEL_WEIGHTS, "r+b") as f:  # sparse: no disk is used, nothing is read
        f.truncate(limits.machine_memory_bytes() + 1)
    with pytest.raises(ValueError, match=r"^run x: weights\.safetensors is .*; at most .* is read$"):
        read_model(folder, source="run x")


def test_a_torch_save_file_under_the_weights_name_is_called_what_it_is(tmp_path):
    folder = written(tmp_path)
    torch.save({"w": torch.zeros(2)}, folder / MODEL_WEIGHTS)
    manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    manifest["weights_sha256"] = hashlib.sha256((folder / MODEL_WEIGHTS).read_bytes()).hexdigest()
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"^run x: weights\.safetensors is not a safetensors file"):
        read_model(folder, source="run x")
