"""Controller CPU of ansible-playbook runs: a wrapper that counts its whole process tree.

``install_wrapper`` writes an ``ansible-playbook`` script that runs the real one as its child
and, when it ends, appends one JSON line to a log: the CPU-seconds (user + system) of every
process of the run's tree, from ``resource.getrusage(RUSAGE_CHILDREN)``. The wrapper makes
itself a child subreaper first, so processes that daemonize (ssh's ControlPersist masters)
are reparented to it rather than to init and their CPU is counted when it reaps them; ssh
masters still alive when the playbook exits are terminated and reaped (the product's runner
closes them after every run anyway). Other survivors (daemons a play on a local connection
started on purpose) are left running and not counted.

The product's runner puts the directory of the worker's interpreter first on the run's
PATH, so ``controller_python`` makes a small virtual environment whose ``bin`` holds the
wrapper and whose interpreter sees this one's packages: a worker started with it runs every
playbook through the wrapper. The plain runs call the wrapper directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import sysconfig
import time
import venv
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>

WRAPPER = """#!{python}
import sys
sys.path.insert(0, {root!r})
from benchmarks.ctrlcpu import wrap
sys.exit(wrap([{real!r}, *sys.argv[1:]], {log!r}))
"""


@dataclass(frozen=True)
class Run:
    """One wrapped ansible-playbook run."""

    playbook: str
    cpu: float  # CPU-seconds of the whole process tree
    wall: float
    rc: int
    strategy: str | None = None  # ANSIBLE_STRATEGY of the run's environment, if set


def _ssh_children() -> list[psutil.Process]:
    masters = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "ssh":
                masters.append(child)
    return masters


def _reap_exited() -> None:
    """Wait for every child that has exited (orphans reparented here included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def wrap(cmd: list[str], log_path: str) -> int:
    """Run ``cmd``, then log the CPU of its whole tree (see the module's doc)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    started = time.monotonic()
    child = subprocess.Popen(cmd)

    def forward(signum, _frame):
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    rc = child.wait()
    wall = time.monotonic() - started
    masters = _ssh_children()
    for master in masters:
        with contextlib.suppress(psutil.NoSuchProcess):
            master.terminate()
    psutil.wait_procs(masters, timeout=5)  # waits for (reaps) our children
    _reap_exited()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    playbook = next((a for a in reversed(cmd) if a.endswith((".yml", ".yaml"))), "")
    with open(log_path, "a") as log:
        log.write(json.dumps({"playbook": Path(playbook).name, "rc": rc, "wall": wall,
                              "cpu": usage.ru_utime + usage.ru_stime,
                              "strategy": os.environ.get("ANSIBLE_STRATEGY")}) + "\n")
    return rc


def install_wrapper(bin_dir: Path, log_path: Path, real: str | None = None) -> Path:
    """Write ``bin_dir/ansible-playbook``, logging to ``log_path``; return its path."""
    real = real or str(Path(sys.executable).parent / "ansible-playbook")
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "ansible-playbook"
    wrapper.write_text(WRAPPER.format(python=sys.executable, root=str(ROOT), real=real,
                                      log=str(log_path)))
    wrapper.chmod(0o755)
    return wrapper


def controller_python(env_dir: Path, log_path: Path) -> Path:
    """An interpreter whose ``bin`` holds the wrapper and that sees this one's packages."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir, not a plain path line, so this environment's .pth files (the editable
    # install of the checkout among them) are read too.
    Path(purelib, "lambda-bench-parent.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    install_wrapper(env_dir / "bin", log_path)
    return python


def read_runs(log_path: Path, offset: int = 0) -> tuple[list[Run], int]:
    """The runs logged from byte ``offset`` on, and the offset after them."""
    try:
        with open(log_path) as log:
            log.seek(offset)
            text = log.read()
    except FileNotFoundError:
        return [], offset
    runs = [Run(**json.loads(line)) for line in text.splitlines() if line.strip()]
    return runs, offset + len(text.encode())


def per_host_slope(cpu_by_hosts: dict[int, float]) -> float | None:
    """Least-squares slope of CPU-seconds over host count (the CPU one more host adds)."""
    points = [(n, c) for n, c in cpu_by_hosts.items() if c is not None]
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    return (sum((n - mean_n) * (c - mean_c) for n, c in points)
            / sum((n - mean_n) ** 2 for n, _ in points))
