"""A queue for the SQLite writers of one database file, in this process and across others.

SQLite admits one writer at a time. The others retry under ``busy_timeout``, sleeping 1,
2, 5, 10, 15, 20, 25... ms between tries, so under load the lock is often free while
every writer that wants it sleeps: the accept path (a compare-and-set and an insert, well
under a millisecond) then waits tens of milliseconds. Writers that queue here instead get
the lock as soon as it is free: the threads of a process queue on a ``threading.Lock``,
and the one thread per process that holds it waits on an ``flock`` of ``<db>.writers``.

The gate only orders writers; SQLite's own lock still makes them exclusive. So a wait
that outlasts ``timeout`` goes on without the gate (and a warning) rather than failing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

POLL_SECONDS = 0.0002  # between flock tries: well under one write transaction

_gates: dict[str, WriterGate] = {}
_gates_lock = threading.Lock()


class WriterGate:
    def __init__(self, lock_path: str, timeout: float = 30.0):
        self.lock_path = lock_path
        self.timeout = timeout
        self._pid: int | None = None
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._setup_lock = threading.Lock()

    @classmethod
    def for_database(cls, database: str) -> WriterGate:
        """The one gate of this process for a database file (all engines share it)."""
        path = os.path.abspath(database) + ".writers"
        with _gates_lock:
            gate = _gates.get(path)
            if gate is None:
                gate = _gates[path] = cls(path)
            return gate

    def _ensure_process_state(self) -> None:
        # flock belongs to an open file description: a forked child (a gunicorn worker)
        # must open its own, and must not inherit a lock state from its parent.
        if self._pid == os.getpid():
            return
        with self._setup_lock:
            if self._pid != os.getpid():
                self._threads = threading.Lock()
                self._fd = None
                self._pid = os.getpid()

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def acquire(self) -> bool:
        """Wait for this writer's turn; False when it gave up (go on ungated)."""
        self._ensure_process_state()
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            log.warning("SQLite writer gate: no turn within %.0fs; writing without it",
                        self.timeout)
            return False
        try:
            fd = self._file()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        log.warning("SQLite writer gate: another process kept it %.0fs; "
                                    "writing without it", self.timeout)
                        break
                    time.sleep(POLL_SECONDS)
        except OSError as exc:
            log.warning("SQLite writer gate %s unusable (%s); writing without it",
                        self.lock_path, exc)
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()
