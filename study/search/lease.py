"""One live driver per study: a lease file in the study's folder.

A driver that runs or resumes a study writes ``freqstudy-lease.json`` (its host, PID, a
random token and a heartbeat time) into the study's Tune folder and renews the heartbeat
every :data:`RENEW_S` seconds from a daemon thread; at the end it removes the file. A
second driver finds the file and is refused in one line naming the holder, unless the
lease has expired: its heartbeat is older than :data:`TTL_S` (the holder stopped renewing:
it died, or its machine did), or the holder ran on this host and its PID is gone (a killed
driver's study resumes at once). Being a file in the study folder, it works wherever the
study's storage is shared (NFS; an object store through ``pyarrow.fs``, without an atomic
create: there a taker reads the lease back after writing it and yields if another won).
Times are the machines' wall clocks (``time.time``): nodes sharing storage are assumed to
keep them within seconds (NTP), far inside the TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from study.errors import FieldError
from study.files import pid_alive
from study.search import study_files

LEASE_FILE = "freqstudy-lease.json"
RENEW_S = 10.0  # heartbeat period
TTL_S = 60.0  # a lease not renewed for this long has expired (six missed heartbeats)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str
    heartbeat: float  # unix time of the last renewal
    started: float

    def describe(self, now: float) -> str:
        return f"driver PID {self.pid} on {self.host} (heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"


def _holder(value: dict | None) -> Holder | None:
    if value is None:
        return None
    try:
        return Holder(
            host=str(value["host"]),
            pid=int(value["pid"]),
            token=str(value["token"]),
            heartbeat=float(value["heartbeat"]),
            started=float(value["started"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a damaged lease holds nothing


def is_expired(holder: Holder, now: float, *, ttl: float = TTL_S) -> bool:
    """The holder stopped renewing, or it is a process of this host that no longer exists."""
    if now - holder.heartbeat > ttl:
        return True
    return holder.host == socket.gethostname() and not pid_alive(holder.pid)


class StudyLease:
    """The lease a driver holds on the study folder ``path`` while it runs the study.

    Use as a context manager: ``with StudyLease(path, study): ...``; ``acquire`` raises
    :class:`study.errors.FieldError` (field ``resume``) naming the live holder.
    """

    def __init__(self, path: str, study: str, *, renew_s: float = RENEW_S, ttl_s: float = TTL_S) -> None:
        self.path, self.study = path, study
        self.renew_s, self.ttl_s = renew_s, ttl_s
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: Holder | None = None  # set when another driver took the lease from this one

    def _record(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "heartbeat": time.time(),
            "started": self.started,
            "study": self.study,
        }

    def current(self) -> Holder | None:
        try:
            return _holder(study_files.read_json(self.path, LEASE_FILE))
        except ValueError:
            return None

    def acquire(self) -> None:
        """Take the lease, or raise naming its live holder; starts the heartbeat."""
        for _ in range(3):
            if study_files.create_json(self.path, LEASE_FILE, self._record()):
                break
            holder = self.current()
            now = time.time()
            if holder is not None and not is_expired(holder, now, ttl=self.ttl_s):
                raise FieldError(
                    "resume",
                    f": study {self.study!r} is being run by {holder.describe(now)}; one driver at a "
                    f"time (its lease in {self.path} expires {self.ttl_s:.0f} s after its last heartbeat)",
                )
            if holder is not None:
                log.info("study %s: taking over the expired lease of %s", self.study, holder.describe(now))
            study_files.delete(self.path, LEASE_FILE)  # expired or damaged: the next try creates ours
        else:
            raise FieldError(
                "resume", f": study {self.study!r}: another driver is taking its lease; try again"
            )
        time.sleep(0.05)
        mine = self.current()
        if mine is None or mine.token != self.token:  # an object store's race, lost
            raise FieldError(
                "resume", f": study {self.study!r}: another driver took its lease at the same time"
            )
        self._thread = threading.Thread(target=self._renew, name="freqstudy-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            holder = self.current()
            if holder is not None and holder.token != self.token:
                self.lost = holder
                log.error(
                    "study %s: %s took the lease of this driver (its heartbeat was late); stop one of them",
                    self.study,
                    holder.describe(time.time()),
                )
                return
            try:
                study_files.write_json(self.path, LEASE_FILE, self._record())
            except OSError as e:  # storage briefly away: the next beat tries again
                log.warning("study %s: lease heartbeat not written (%s)", self.study, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this driver's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        holder = self.current()
        if holder is not None and holder.token == self.token:
            study_files.delete(self.path, LEASE_FILE)

    def __enter__(self) -> StudyLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
