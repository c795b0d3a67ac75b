"""SQLite's WAL checkpoints on a thread of their own, off the writers' path.

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages: that
one commit copies ~4 MB into the database file and fsyncs it (5-20 ms here, about one
accept in 160), while it still holds the writer gate, so every writer of every process
waits behind it: most of the accept path's p99 at half load (benchmarks/README.md, session
16). Here each process that writes runs
PASSIVE checkpoints on a thread a moment after its commits: they copy what is already
committed while writers go on (a PASSIVE checkpoint takes no write lock and never
waits), and SQLite's own checkpoint stays on as a backstop at ``BACKSTOP_PAGES``, for
processes that write without one and for a WAL that never stops growing (a checkpoint
that runs beside writers leaves their newest frames for the next one, so the WAL is only
reset when a checkpoint catches up: in a pause, or at the backstop).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

log = logging.getLogger(__name__)

BACKSTOP_PAGES = 10_000  # PRAGMA wal_autocheckpoint of every connection: ~40 MB of WAL
DELAY_SECONDS = 0.05  # after a commit, so that one checkpoint takes in a burst of them
IDLE_SECONDS = 30.0  # a thread with nothing to do for this long ends (and closes its file)

_checkpointers: dict[str, WalCheckpointer] = {}
_checkpointers_lock = threading.Lock()


class WalCheckpointer:
    def __init__(self, database: str, delay: float = DELAY_SECONDS,
                 idle: float = IDLE_SECONDS):
        self.database = database
        self.delay = delay
        self.idle = idle
        self.runs = 0  # checkpoints run by this process, for tests and the curious
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, checkpointed)
        self._forget_threads()

    def _forget_threads(self) -> None:
        """No thread, a fresh lock: the state a forked child starts from."""
        self._lock = threading.Lock()
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._checkpointing = threading.Lock()  # held inside SQLite; see _before_fork

    @classmethod
    def for_database(cls, database: str) -> WalCheckpointer:
        """The one checkpointer of this process for a database file."""
        path = os.path.abspath(database)
        with _checkpointers_lock:
            checkpointer = _checkpointers.get(path)
            if checkpointer is None:
                checkpointer = _checkpointers[path] = cls(path)
            return checkpointer

    def notify(self) -> None:
        """A write transaction committed: checkpoint soon (starts the thread if needed)."""
        # Under the lock the thread takes to end when idle, so no commit is left behind.
        with self._lock:
            self._pending.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._pending,), daemon=True,
                    name=f"wal-checkpointer:{os.path.basename(self.database)}")
                self._thread.start()

    def _run(self, pending: threading.Event) -> None:
        conn = None
        try:
            while True:
                if not pending.wait(self.idle):
                    with self._lock:
                        if not pending.is_set():
                            self._thread = None
                            return
                    continue
                time.sleep(self.delay)
                pending.clear()
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        continue
                try:
                    with self._checkpointing:
                        busy, frames, done = conn.execute(
                            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint of %s failed: %s", self.database, exc)
                    continue
                self.last = (busy, frames, done)
                self.runs += 1
        finally:
            if conn is not None:
                with self._checkpointing:
                    conn.close()

    def _connect(self) -> sqlite3.Connection | None:
        # mode=rw: never create the file (a database removed under a running process).
        try:
            with self._checkpointing:
                return sqlite3.connect(f"file:{quote(self.database)}?mode=rw", uri=True,
                                       isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("WAL checkpointer cannot open %s: %s", self.database, exc)
            return None


def _before_fork() -> None:
    # A fork while this process's thread is inside SQLite could copy one of SQLite's own
    # mutexes held into the child, whose next SQLite call would then hang: the fork
    # waits for the checkpoint (a few ms) instead. The registry's lock, held until after
    # the fork, keeps the set of checkpointers (and of locks held) as it is.
    _checkpointers_lock.acquire()
    for checkpointer in _checkpointers.values():
        checkpointer._checkpointing.acquire()


def _after_fork_in_parent() -> None:
    for checkpointer in _checkpointers.values():
        checkpointer._checkpointing.release()
    _checkpointers_lock.release()


def _after_fork_in_child() -> None:
    # The parent's threads do not exist in a forked child (a gunicorn worker), and the
    # locks held over the fork stay held: each checkpointer starts again from nothing.
    global _checkpointers_lock
    _checkpointers_lock = threading.Lock()
    for checkpointer in _checkpointers.values():
        checkpointer._forget_threads()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
