"""Screenshots of a study in the MLflow UI for the README: the runs table, a trial's page and
the parent run's description.

Runs a tiny smoke study and its report against a fresh ``mlflow server`` (in a temporary
folder), opens the addresses freqstudy prints in headless Chromium and writes
``docs/ui/runs.png``, ``docs/ui/trial.png`` and ``docs/ui/study.png``. The server is stopped
(by its process id) at the end. About five minutes on a 2-core CPU::

    python scripts/screenshots.py --data-dir ../shared/data/cifar10-subset
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDY = "ui-demo"
TINY = (
    "train.epochs=2",
    "data.train_limit=600",
    "eval.corruption_limit=10",
    "eval.corruptions=[gaussian_noise,contrast]",
    "eval.severities=[1,3]",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def freqstudy(*argv: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "study.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"freqstudy {argv[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def screenshot(browser: str, url: str, path: Path, size: str) -> None:
    with tempfile.TemporaryDirectory(prefix="freqstudy-chromium-") as profile:
        subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                "--virtual-time-budget=30000",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    print(f"wrote {path}  ({url})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    p.add_argument("--out", default=str(REPO / "docs" / "ui"))
    p.add_argument("--num-trials", type=int, default=4)
    args = p.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium on PATH (Debian: apt-get install chromium)")

    from mlflow import MlflowClient

    from study import metrics as M
    from study.tracking.links import run_url, study_url
    from study.tracking.server import free_port, is_healthy, server_command, server_env

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="freqstudy-screenshots-") as tmp:
        root = Path(tmp)
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        log = open(root / "server.log", "w")
        server = subprocess.Popen(
            server_command(host="127.0.0.1", port=port, root=root),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
        try:
            deadline = time.time() + 120
            while not is_healthy(uri):
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(
                        f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
            env = {**os.environ, "FREQSTUDY_HOME": str(root / "home"), "PYTHONPATH": str(REPO)}
            run = ["run", "--space", "smoke", "--study", STUDY, "--num-trials", str(args.num_trials)]
            run += ["--max-concurrent", "2", "--data-dir", args.data_dir, "--tracking-uri", uri]
            run += ["--storage", str(root / "studies")]
            for setting in TINY:
                run += ["--set", setting]
            print(freqstudy(*run, env=env))
            print(
                freqstudy(
                    "report", "--study", STUDY, "--tracking-uri", uri, "--out", str(root / "report"), env=env
                )
            )

            client = MlflowClient(uri)
            exp = client.get_experiment_by_name(STUDY)
            parent = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = 'study'")[0]
            trials = client.search_runs(
                [exp.experiment_id],
                f"tags.`{M.TAG_ROLE}` = 'trial' and tags.`{M.TAG_BASELINE}` != 'true'",
                order_by=[f"metrics.`{M.VAL_CORRUPTION_ACC}` DESC"],
            )
            screenshot(browser, study_url(uri, STUDY, client=client), out / "runs.png", "1600,760")
            trial = (trials or [parent])[0]
            screenshot(
                browser, run_url(uri, exp.experiment_id, trial.info.run_id), out / "trial.png", "1400,1100"
            )
            screenshot(
                browser, run_url(uri, exp.experiment_id, parent.info.run_id), out / "study.png", "1400,1300"
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
