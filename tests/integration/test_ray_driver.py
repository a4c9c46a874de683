"""The Ray a study's driver starts, seen from a real worker and from the driver's console
(issue 24): a worker's ``PYTHONPATH`` leads with the checkout's root, never ``study/`` itself
(whose ``metrics``, ``config``, ``files`` would shadow top-level modules), and carries the
driver's code version; an error Ray's GCS publishes to every driver (a lost node's raylet
state dump) stays out of the compact console."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_started():
    """A local Ray started the way a study's driver starts it (compact console: verbose 0)."""
    import ray

    from study.search.tune import _init_ray

    assert not ray.is_initialized()
    started = _init_ray(None, verbose=0, env={"FREQSTUDY_PROBE": "1"})
    assert started
    yield ray
    ray.shutdown()


def test_workers_import_from_the_checkout_root_and_tag_the_drivers_version(ray_started):
    """The old driver put ``<repo>/study`` on the workers' path: ``import metrics`` found
    study/metrics.py on every worker, and a worker without ``.git`` tagged ``0.1.0``."""
    from study.tracking.experiments import code_version

    def seen_by_a_worker() -> dict:
        """What a worker process sees (defined here: pickled by value, so a worker needs no
        test module on its path): its PYTHONPATH, what `import metrics` would load, the code
        version its runs would tag."""
        from study.tracking.experiments import code_version as worker_version

        spec = importlib.util.find_spec("metrics")
        return {
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "metrics": spec.origin if spec else None,
            "probe": os.environ.get("FREQSTUDY_PROBE"),
            "version_env": os.environ.get("FREQSTUDY_CODE_VERSION"),
            "code_version": worker_version(),
        }

    ray = ray_started
    seen = ray.get(ray.remote(num_cpus=0)(seen_by_a_worker).remote(), timeout=120)
    first = Path(seen["pythonpath"].split(os.pathsep)[0])
    assert (first / "study" / "__init__.py").is_file(), seen
    assert first.resolve() == REPO, seen
    assert seen["metrics"] is None or not str(seen["metrics"]).startswith(str(REPO / "study")), seen
    assert seen["probe"] == "1", seen  # the study's own variables reach the workers too
    # The driver's version travels with the job: a node without .git tags it, not its own.
    assert seen["version_env"] == code_version() == seen["code_version"], seen


def test_a_raylet_error_published_to_the_driver_stays_off_the_console(ray_started, capfd, caplog):
    """A node lost mid-study made Ray's GCS publish the raylet's state dump (~20 lines, twice)
    to every driver, which printed it into the compact console. Published here through the
    real GCS, as Ray publishes it; `--debug` still shows it (the study's logger at DEBUG)."""
    import logging

    from ray._private.utils import publish_error_to_driver

    ray = ray_started
    marker = f"freqstudy-raylet-probe-{os.getpid()}"
    gcs = ray._private.worker.global_worker.gcs_client
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="study.search.tune"):
        publish_error_to_driver("node_died", f"{marker}\nThe node with node id ... has been marked dead", gcs)
        deadline = time.time() + 30
        while time.time() < deadline and marker not in caplog.text:
            time.sleep(0.2)
        time.sleep(1.0)  # a print would have reached the console by now as well
    out, err = capfd.readouterr()
    assert marker not in out and marker not in err, (out, err)
    assert marker in caplog.text  # delivered to the driver, kept for --debug
