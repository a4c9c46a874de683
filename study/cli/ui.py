"""``freqstudy ui``: serve the local MLflow store for browsing.

``ui`` goes through the store's shared server registration
(``study.tracking.server.local_tracking_uri``): when another freqstudy command already
runs the store's server, ``ui`` prints that server's URL and holds a lease on it (so it
stays up while ``ui`` runs); otherwise it starts the server on ``--host``/``--port`` and
registers it, so a ``train`` or ``run`` meanwhile uses it instead of opening the SQLite
file with a second server. A taken port is one line and exit 2, before anything starts;
"serving ... at URL" is printed once the server answers. Ctrl-C, SIGTERM or SIGHUP end
``ui``: its lease is released, and the server (its whole process group) is stopped when
no other command still uses it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

HEALTH_EVERY_S = 5.0  # while serving: how often the server is checked
HEALTH_MISSES = 3  # consecutive failed checks before `ui` says the server is gone and exits 1


class _Stop(BaseException):
    """A signal asked ``ui`` to end (a BaseException, as KeyboardInterrupt is: a library's
    ``except Exception`` around whatever ui is doing when the signal lands must not swallow it)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")


def _stop_on_signals() -> None:
    def stop(signum, frame):
        # Once: the lease release and the server's shutdown that follow must not be cut short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def run(args: argparse.Namespace) -> int:
    from study.tracking.server import (
        is_healthy,
        local_tracking_uri,
        port_problem,
        registered_server,
        store_dir,
    )

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: allowed 1..65535")
    store_dir().mkdir(parents=True, exist_ok=True)
    shared = registered_server()
    if shared is None and (problem := port_problem(args.host, args.port)) is not None:
        raise ValueError(f"--port {args.port}: taken on {args.host} ({problem}); choose another")
    _stop_on_signals()
    try:
        if shared is None:
            print(f"starting the MLflow server for {store_dir()} on {args.host}:{args.port} ...", flush=True)
        with local_tracking_uri(None, host=args.host, port=args.port) as uri:
            note = " (already running for another freqstudy command)" if uri == shared else ""
            print(f"serving {store_dir()} at {uri}{note} (Ctrl-C stops)", flush=True)
            from study.tracking.links import study_links

            for study, url in study_links(uri):  # each study's runs view (not MLflow's GenAI overview)
                print(f"  study {study}: {url}", flush=True)
            misses = 0
            while misses < HEALTH_MISSES:
                time.sleep(HEALTH_EVERY_S)
                misses = 0 if is_healthy(uri, timeout_s=HEALTH_EVERY_S) else misses + 1
            print(f"freqstudy ui: the server at {uri} stopped answering", file=sys.stderr)
            return 1
    except _Stop:
        return 0
    except RuntimeError as e:  # the server exited or never answered (the message ends with its log)
        print(f"freqstudy ui: {e}", file=sys.stderr)
        return 1
