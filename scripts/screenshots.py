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
import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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


class Browser:
    """Headless Chromium driven over the DevTools protocol (``aiohttp``'s websocket client, which
    Ray already brings): open an address, wait for text, click, capture a PNG."""

    def __init__(self, executable: str, profile: str):
        self.proc = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
            if found := re.search(r"ws://[\w.:]+/devtools/browser/\S+", line):
                self.browser_ws = found.group(0)
                break
        else:
            raise SystemExit("Chromium did not open its DevTools endpoint")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # never block on its log
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        self.ids = itertools.count(1)

    async def _session(self):
        import aiohttp

        return aiohttp.ClientSession()

    async def _call(self, ws, method: str, **params):
        msg_id = next(self.ids)
        await ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            reply = await ws.receive_json(timeout=120)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def _shot(
        self, url: str, path: Path, width: int, height: int, wait_for: str, clicks: tuple[str, ...]
    ):
        async with self.session.ws_connect(self.browser_ws, max_msg_size=0) as browser:
            target = (await self._call(browser, "Target.createTarget", url="about:blank"))["targetId"]
        page_ws = self.browser_ws.split("/devtools/")[0] + f"/devtools/page/{target}"
        async with self.session.ws_connect(page_ws, max_msg_size=0) as ws:
            await self._call(
                ws,
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await self._call(ws, "Page.navigate", url=url)
            await self._wait_text(ws, wait_for)
            await self._call(ws, "Runtime.evaluate", expression=CLOSE_ASSISTANT)
            for label in clicks:
                await self._call(ws, "Runtime.evaluate", expression=CLICK % json.dumps(label))
            await asyncio.sleep(3)  # the page settles after the clicks
            shot = await self._call(ws, "Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    async def _wait_text(self, ws, text: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = await self._call(
                ws, "Runtime.evaluate", expression=f"document.body.innerText.includes({json.dumps(text)})"
            )
            if found.get("result", {}).get("value"):
                await asyncio.sleep(2)  # the rest of the page's requests
                return
            await asyncio.sleep(0.5)
        raise SystemExit(f"the page never showed {text!r}")

    def screenshot(self, url, path, *, size=(1600, 800), wait_for="matching runs", clicks=()):
        self.loop.run_until_complete(self._shot(url, path, *size, wait_for, tuple(clicks)))
        print(f"wrote {path}  ({url})")

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# The MLflow Assistant panel takes a third of the window: closed, by its own close button.
CLOSE_ASSISTANT = """(() => {
  const close = document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (close) close.click();
  return Boolean(close);
})()"""
CLICK = """(() => {
  const b = [...document.querySelectorAll('button, a, span')].find(e => e.textContent.trim() === %s);
  if (b) b.click();
  return Boolean(b);
})()"""


def run_study(uri: str, root: Path, data_dir: str, num_trials: int) -> None:
    """The tiny study and its report, logged to ``uri``."""
    env = {**os.environ, "FREQSTUDY_HOME": str(root / "home"), "PYTHONPATH": str(REPO)}
    run = ["run", "--space", "smoke", "--study", STUDY, "--num-trials", str(num_trials)]
    run += ["--max-concurrent", "2", "--data-dir", data_dir, "--tracking-uri", uri]
    run += ["--storage", str(root / "studies")]
    for setting in TINY:
        run += ["--set", setting]
    print(freqstudy(*run, env=env))
    print(
        freqstudy("report", "--study", STUDY, "--tracking-uri", uri, "--out", str(root / "report"), env=env)
    )


def take(browser_path: str, uri: str, out: Path) -> None:
    """The three screenshots of study ``STUDY`` at ``uri``."""
    from mlflow import MlflowClient

    from study import metrics as M
    from study.tracking.links import run_url, study_url

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY)
    parent = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = 'study'")[0]
    trials = client.search_runs(
        [exp.experiment_id],
        f"tags.`{M.TAG_ROLE}` = 'trial'",
        order_by=[f"metrics.`{M.VAL_CORRUPTION_ACC}` DESC"],
    )
    trial = next(t for t in trials if t.data.tags.get(M.TAG_BASELINE) != "true")
    with tempfile.TemporaryDirectory(prefix="freqstudy-chromium-") as profile:
        browser = Browser(browser_path, profile)
        try:
            browser.screenshot(study_url(uri, STUDY, client=client), out / "runs.png", size=(2200, 600))
            browser.screenshot(
                run_url(uri, exp.experiment_id, trial.info.run_id),
                out / "trial.png",
                size=(1200, 1500),
                wait_for="Description",
                clicks=("Show more",),
            )
            browser.screenshot(
                run_url(uri, exp.experiment_id, parent.info.run_id),
                out / "study.png",
                size=(1400, 1400),
                wait_for="Description",
                clicks=("Show more",),
            )
        finally:
            browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    p.add_argument("--out", default=str(REPO / "docs" / "ui"))
    p.add_argument("--num-trials", type=int, default=4)
    p.add_argument(
        "--tracking-uri", help=f"a server that already holds study {STUDY!r}: only the screenshots"
    )
    args = p.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium on PATH (Debian: apt-get install chromium)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tracking_uri:
        take(browser, args.tracking_uri, out)
        return 0

    from study.tracking.server import free_port, is_healthy, server_command, server_env

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
            run_study(uri, root, args.data_dir, args.num_trials)
            take(browser, uri, out)
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
