"""The pure layers load neither Ray nor MLflow: checked in a fresh interpreter, module by module."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["models", "models.spectral", "models.stem", "models.resnet", "study.config", "study.metrics", "study.pareto"]
HEAVY = ("ray", "mlflow")

PROBE = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    found[name] = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print(json.dumps(found))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Module name -> heavy modules in sys.modules right after importing it (cumulative, in order)."""
    present = [name for name in PURE if (ROOT / (name.replace(".", "/") + ".py")).exists() or (ROOT / name).is_dir()]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *present], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", PURE)
def test_pure_module_loads_neither_ray_nor_mlflow(name, loaded):
    if name not in loaded:
        pytest.skip(f"{name} does not exist yet in this checkout, so there is nothing to import")
    assert loaded[name] == [], f"importing {name} (after {PURE[: PURE.index(name)]}) loaded {loaded[name]}"


def test_the_probe_can_see_heavy_imports():
    # Guard against a probe that could never fail: the same check does see a module that is imported.
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed, so the probe cannot be shown to detect it")
    probe = PROBE.replace("importlib.import_module(name)", "importlib.import_module(name); import mlflow")
    out = subprocess.run([sys.executable, "-c", probe, "json"], capture_output=True, text=True, timeout=120, check=True)
    assert "mlflow" in json.loads(out.stdout.strip().splitlines()[-1])["json"]
