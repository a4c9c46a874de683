"""``freqstudy ui``: serve the local MLflow store for browsing."""

from __future__ import annotations

import argparse
import subprocess


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")


def run(args: argparse.Namespace) -> int:
    from study.tracking.server import server_command, server_env, store_dir

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: allowed 1..65535")
    store_dir().mkdir(parents=True, exist_ok=True)
    print(f"serving {store_dir()} at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    return subprocess.call(server_command(host=args.host, port=args.port), env=server_env())
