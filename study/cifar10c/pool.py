"""The worker processes of CIFAR-10-C generation, and whether they can be started from here.

``worker_pool`` is a spawn ``ProcessPoolExecutor`` whose workers run their math
libraries on one thread each and end when the run that started them dies.
``spawn_reruns_caller`` says when spawned workers would re-run the caller's
own top-level code (a script without an ``if __name__ == "__main__":``
guard), in which case ``generate`` runs the units in its own process instead
and ``note_in_process`` says once what to add.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import FrameType

from study.cifar10c.worker import exit_with_parent

# Math-library thread counts, read when a process starts; 1 in workers, which already fill the cores.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _is_main_test(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = (test.left, test.comparators[0])
    return any(isinstance(a, ast.Name) and a.id == "__name__" for a in sides) and any(
        isinstance(a, ast.Constant) and a.value == "__main__" for a in sides
    )


@functools.lru_cache(maxsize=8)
def _main_guards(filename: str) -> tuple[tuple[int, int], ...] | None:
    """Line ranges of the ``if __name__ == "__main__":`` blocks' bodies in ``filename``; None: unreadable."""
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"), filename)
    except (OSError, SyntaxError, ValueError):
        return None
    return tuple(
        (node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_main_test(node.test)
    )


def spawn_reruns_caller() -> bool:
    """Whether spawned workers would re-run the code that is calling us now.

    A spawned process imports the main module again (as ``__mp_main__``) before
    it runs anything, except a package's ``__main__`` (``python -m pkg``) and
    an interactive session, a notebook or ``python -c``, which have no file to
    re-run. If the main module's top-level code is on the stack here, outside
    any ``if __name__ == "__main__":`` block, each worker would run it again
    and start processes while it is still bootstrapping, which multiprocessing
    refuses. A file that cannot be read back counts as unguarded.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return False
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return False
    if spec_name is None and not getattr(main, "__file__", None):
        return False
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return False  # not called from the main module's top level: a worker's re-run will not call us
    guards = _main_guards(frame.f_code.co_filename)
    return guards is None or not any(lo <= frame.f_lineno <= hi for lo, hi in guards)


_NOTED_IN_PROCESS = False


def note_in_process() -> None:
    global _NOTED_IN_PROCESS
    if not _NOTED_IN_PROCESS:
        _NOTED_IN_PROCESS = True
        print(
            "freqstudy: note: generating corruptions in this process, not in worker processes: "
            'the script has no `if __name__ == "__main__":` guard around its code (spawned '
            "workers would re-run it); add one for parallel workers",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def worker_pool(n_workers: int):
    """A spawn ``ProcessPoolExecutor`` whose workers run their math libraries on one thread each.

    The workers already fill the cores; a BLAS/OpenMP pool per worker on top
    would oversubscribe them. The libraries read ``THREAD_ENV`` when a process
    starts, and the executor may start workers at any ``submit``, so the
    variables are set for the pool's whole life and restored after it (the
    parent's own libraries were loaded long before and are unaffected).
    """
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe under torch/Ray threads
        with ProcessPoolExecutor(
            max_workers=n_workers, mp_context=ctx, initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
