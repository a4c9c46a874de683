"""``cluster.yaml`` passes Ray's own cluster-config schema validation (the
launcher's defaults filled in first, as ``ray up`` does), and keeps the
properties the design asks of it: a CPU head running MLflow, autoscaling GPU
workers, the project installed by the setup commands, no credentials inside."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from study import yamlfiles

pytestmark = pytest.mark.integration

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _validated(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    filled = prepare_config(copy.deepcopy(config))
    validate_config(filled)
    return filled


@pytest.fixture(scope="module")
def config() -> dict:
    return yamlfiles.load_file(CLUSTER_YAML, "cluster file")  # the project's one bounded YAML loader


def test_cluster_yaml_passes_ray_schema_validation(config):
    filled = _validated(config)
    assert filled["head_node_type"] in filled["available_node_types"]


def test_ray_validation_rejects_a_broken_copy(config):
    """The check above can fail: a misspelt field is refused by the same schema."""
    import jsonschema

    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["max_wrkers"] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_wrkers"):
        _validated(broken)


def test_head_serves_mlflow_and_workers_autoscale_on_gpus(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(
        t["resources"].get("GPU", 0) >= 1 and t["max_workers"] > t.get("min_workers", 0) for t in workers
    )
    start = "\n".join(config["head_start_ray_commands"])
    assert "mlflow server" in start and "--backend-store-uri" in start and "s3://" in start
    assert "--dashboard-host=127.0.0.1" in start
    assert any("pip install" in c and "freqstudy" in c for c in config["setup_commands"])


def test_no_credentials_inside():
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # AWS access key ids
    assert not re.search(r"postgresql://[^\s:@]+:[^\s@]+@(?!HOST)", text)  # a real user:password@host
    for word in ("aws_access_key_id", "aws_secret_access_key", "ssh_private_key", "MLFLOW_TRACKING_PASSWORD"):
        assert word not in text
