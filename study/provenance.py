"""Which code wrote a run, also where there is no ``.git``.

A cluster's nodes get the checkout without its ``.git`` (``ray job submit --working-dir``
leaves it out, and ``cluster.yaml`` excludes it from the rsync), so ``git describe`` cannot
run there. The version is, first found:

1. ``FREQSTUDY_CODE_VERSION`` in the environment: a study's driver sets it for every worker
   to its own version, so all trials of a study carry the driver's version, and a user can
   set it for a Ray job (``--runtime-env-json``);
2. ``git describe --always --dirty --tags`` of the checkout;
3. the file ``study/CODE_VERSION`` (written by ``python -m study.provenance --write`` before
   the checkout is shipped; git ignores it, rsync and Ray's upload carry it);
4. the installed package's version, marked ``+nogit`` so it is not mistaken for a commit.

No MLflow, no Ray: the driver reads it before either starts.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

CODE_VERSION_ENV = "FREQSTUDY_CODE_VERSION"
VERSION_FILE = Path(__file__).resolve().parent / "CODE_VERSION"
REPO = Path(__file__).resolve().parents[1]
# What a version may look like (git describe output, a package version): one short line.
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def git_version(repo: Path = REPO) -> str | None:
    """``git describe`` of ``repo``, or None where git or the ``.git`` is missing."""
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and _VALID.match(text) else None


def _file_version() -> str | None:
    try:
        text = VERSION_FILE.read_text(encoding="utf-8")[:200].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _VALID.match(text) else None


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of the code running here (see the module's order)."""
    given = os.environ.get(CODE_VERSION_ENV, "").strip()
    if given and _VALID.match(given):
        return given
    found = git_version() or _file_version()
    if found:
        return found
    try:
        return importlib.metadata.version("freqstudy") + "+nogit"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_version_file() -> str:
    """Write ``git describe`` into ``study/CODE_VERSION`` (before shipping a checkout); returns it.

    Raises:
        ValueError: outside a git checkout.
    """
    version = git_version()
    if version is None:
        raise ValueError(f"{REPO}: not a git checkout with git available; nothing to write")
    VERSION_FILE.write_text(version + "\n", encoding="utf-8")
    return version


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print(f"{VERSION_FILE}: {write_version_file()}")
    elif not sys.argv[1:]:
        print(code_version())
    else:
        sys.exit("usage: python -m study.provenance [--write]")
