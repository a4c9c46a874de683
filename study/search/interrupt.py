"""Whether a study's Tune run was stopped by SIGINT (Ctrl+C).

Tune's ``fit`` catches the first SIGINT itself: it saves the experiment state, stops the
trials and returns, and the results look like a study that simply ran fewer trials. Tune
installs its handler when the run starts and, on SIGINT only, puts back the handler it
found. So a marker handler installed before ``fit`` that is back in place afterwards says
the run was interrupted. Plain ``signal`` calls, no Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Interruption:
    interrupted: bool = False


def _marker(signum, frame) -> None:  # a second Ctrl+C after Tune's own: stop as Python would
    raise KeyboardInterrupt


@contextlib.contextmanager
def watch_interrupt() -> Iterator[Interruption]:
    """``with watch_interrupt() as seen: tuner.fit()`` -> ``seen.interrupted`` once ``fit``
    has returned. Outside the main thread (no handler can be installed there) or with Tune's
    handler switched off (``TUNE_DISABLE_SIGINT_HANDLER``) it never reports one."""
    seen = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, _marker)
    try:
        yield seen
        tune_catches = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0)
        seen.interrupted = tune_catches and signal.getsignal(signal.SIGINT) is _marker
    finally:
        signal.signal(signal.SIGINT, before)
