"""`make smoke`: build a 3-host SSH lab, run playbooks/smoke.yml on it, tear it all down.

    python -m lambda_testbed.lab.smoke [--name lambdalabs] [--subnet 10.213.210.0/24] [--slaves 2]

The playbook runs with plain `ansible-playbook -i <inventory> -e @<extravars>`, the inventory
rendered by the product's own `render_inventory` (ssh connection, the lab's key, root). Real
Spark and ZooKeeper, stand-in HDFS/YARN/Kafka. Prints a per-service table and exits non-zero
when anything failed. Whatever happens, the lab, its daemons and every process of the run
are gone afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from api.adapters import proctree
from api.adapters.ansible import control_root
from api.adapters.inventory import render_inventory
from api.settings import FILES_ROOT, Settings
from lambda_testbed.lab.lab import Lab, LabError
from lambda_testbed.lab.provision import (
    host_names,
    install_distributions,
    lab_extravars,
    lab_instance,
    missing_requirements,
)

log = logging.getLogger(__name__)

PLAYBOOK_DIR = FILES_ROOT / "playbooks"
ROLES_DIR = FILES_ROOT / "roles"
MARKER_ENV = "LAMBDA_SMOKE_RUN"
# Keepalives: a host whose link drops is UNREACHABLE in seconds instead of a hang.
SSH_ARGS = (
    "-o ControlMaster=auto -o ControlPersist=30s -o ServerAliveInterval=2 "
    "-o ServerAliveCountMax=3 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
)


@dataclass
class PlaybookOutcome:
    rc: int | None  # None: killed at the timeout
    stdout: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


def write_inputs(lab: Lab, directory: Path, **extravars: object) -> tuple[Path, Path]:
    """Render the lab's inventory (as the product would) and the extravars file."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(ansible_connection="ssh", ssh_user=lab.ssh_user,
                        ssh_key_file=str(lab.ssh_key))
    inventory = directory / "hosts.ini"
    inventory.write_text(render_inventory(lab_instance(lab), settings))
    extravars_file = directory / "extravars.yml"
    extravars_file.write_text(yaml.safe_dump(lab_extravars(**extravars), sort_keys=True))
    return inventory, extravars_file


def run_playbook(
    playbook: str,
    inventory: Path,
    extravars_file: Path,
    work_dir: Path,
    *,
    extra: dict | None = None,
    timeout: float = 900,
) -> PlaybookOutcome:
    """`ansible-playbook -i inventory -e @extravars playbook`; kill every process it started
    (its session, ssh clients, ssh control masters) once it ends or times out."""
    marker = uuid.uuid4().hex
    control_dir = control_root() / f"s{marker[:10]}"  # private, and short for unix sockets
    control_dir.mkdir(mode=0o700)
    work_dir.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_SSH_ARGS": SSH_ARGS,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOME": str(work_dir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work_dir / "ansible-tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        MARKER_ENV: marker,
    }
    command = [str(venv_bin / "ansible-playbook"), "-i", str(inventory),
               "-e", f"@{extravars_file}"]
    if extra:
        command += ["-e", json.dumps(extra)]
    command.append(str(PLAYBOOK_DIR / playbook))
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        log.error("%s did not finish within %ss: killing it", playbook, timeout)
        rc = None
        kill_run(marker, control_dir)
        stdout, _ = proc.communicate()
        stdout += f"\n[smoke] killed after {timeout}s\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_run(marker, control_dir)
    return PlaybookOutcome(rc, stdout, time.monotonic() - started)


def kill_run(marker: str, control_dir: Path) -> list[int]:
    """Kill the run's processes: those carrying its marker and its ssh control masters."""

    def find() -> list[int]:
        marked = proctree.find_processes_with_env(MARKER_ENV, marker)
        masters = proctree.find_unix_socket_holders(str(control_dir))
        return sorted(set(marked) | set(masters))

    left = proctree.kill_until_gone(find, 1.0)
    if not left:
        shutil.rmtree(control_dir, ignore_errors=True)
    return left


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    counts: dict[str, dict[str, int]] = {}
    if "PLAY RECAP" not in stdout:
        return counts
    for line in stdout.split("PLAY RECAP", 1)[1].splitlines():
        parts = line.split(":", 1)
        if len(parts) != 2 or "ok=" not in parts[1]:
            continue
        fields = dict(item.split("=", 1) for item in parts[1].split() if "=" in item)
        counts[parts[0].strip()] = {k: int(v) for k, v in fields.items() if v.isdigit()}
    return counts


def failures(stdout: str) -> list[str]:
    """The `fatal:` lines, each with the task it belongs to."""
    found, task = [], "-"
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]", 1)[0]
        elif line.startswith(("fatal:", "failed:")) and "...ignoring" not in line:
            found.append(f"{task}: {line[:300]}")
    return found


def table(report: dict) -> tuple[str, bool]:
    """The per-service table (service, host, started, verified from outside, stopped)."""
    rows: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for result in report.get("results", []):
        key = (result["service"], result["daemon"], result["host"])
        rows.setdefault(key, {"up": [], "down": []})[result["phase"]].append(result)
    not_started = set(report.get("not_started", []))
    lines = [f"{'service':<10} {'daemon':<16} {'host':<20} {'started':<8} "
             f"{'verified from outside':<34} stopped"]
    all_ok = bool(rows) and not not_started
    order = ["hdfs", "yarn", "zookeeper", "kafka", "spark"]
    for (service, daemon, host), phases in sorted(
        rows.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else 99, kv[0])
    ):
        started = "no" if host in not_started else "yes"
        up = phases["up"]
        verified = ("ok " if up and all(r["ok"] for r in up) else "FAIL ") + ", ".join(
            r["check"] + ("" if r["ok"] else " (FAILED)") for r in up
        )
        down = phases["down"]
        stopped = "n/a" if not down else ("yes" if all(r["ok"] for r in down) else "NO")
        ok = started == "yes" and (not up or all(r["ok"] for r in up)) and stopped != "NO"
        all_ok = all_ok and ok
        lines.append(f"{service:<10} {daemon:<16} {host:<20} {started:<8} {verified:<34} {stopped}")
    for host in sorted(not_started):
        lines.append(f"{'-':<10} {'-':<16} {host:<20} {'NO':<8} (start failed on this host)")
    return "\n".join(lines), all_ok


def smoke(name: str, subnet: str, slaves: int, keep_output: Path | None) -> int:
    missing = missing_requirements()
    if missing:
        print(f"smoke: cannot run the real daemons: {missing} (scripts/install-lab-deps.sh)",
              file=sys.stderr)
        return 2
    lab = Lab(name, hosts=host_names(slaves), subnet=subnet)
    timings: dict[str, float] = {}
    try:
        began = time.monotonic()
        lab.up()
        timings["lab up (hosts powered on, sshd answering)"] = time.monotonic() - began
        began = time.monotonic()
        install_distributions(lab)
        timings["provision (stand-ins + ZooKeeper home on every host)"] = time.monotonic() - began
        work = lab.base_dir / "smoke"
        inventory, extravars = write_inputs(lab, work)
        report_file = work / "report.json"
        outcome = run_playbook("smoke.yml", inventory, extravars, work,
                               extra={"smoke_report": str(report_file)})
        timings["smoke.yml (start, verify, stop, verify down)"] = outcome.seconds
        if keep_output:
            keep_output.write_text(outcome.stdout)
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        print(f"smoke: the lab failed: {exc}", file=sys.stderr)
        return 1
    finally:
        began = time.monotonic()
        lab.down()
        timings["lab down"] = time.monotonic() - began

    text, all_ok = table(report)
    print(text)
    began_at = report.get("began_at")
    started = [float(t) for t in report.get("started_at") or [] if t]
    stopped = [float(t) for t in report.get("stopped_at") or [] if t]
    if began_at and started and not report.get("not_started"):
        timings["start phase (lambda-start.yml, every host)"] = max(started) - float(began_at)
    if started and stopped:
        timings["verify + stop + verify down"] = max(stopped) - max(started)
    print()
    for what, seconds in timings.items():
        print(f"  {seconds:7.1f}s  {what}")
    counts = recap(outcome.stdout)
    if not outcome.ok or not all_ok:
        print(f"\nsmoke: FAILED (ansible-playbook rc={outcome.rc})", file=sys.stderr)
        for line in failures(outcome.stdout)[:20]:
            print(f"  {line}", file=sys.stderr)
        for host, count in counts.items():
            print(f"  recap {host}: {count}", file=sys.stderr)
        if not report:
            print(outcome.stdout[-4000:], file=sys.stderr)
        return 1
    print(f"\nsmoke: OK ({len(report['results'])} checks on {len(report['hosts'])} hosts)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambda_testbed.lab.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="lambdalabs", help="lab name (default %(default)s)")
    parser.add_argument("--subnet", default="10.213.210.0/24")
    parser.add_argument("--slaves", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write ansible-playbook's output to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("smoke: the lab needs root and ip netns", file=sys.stderr)
        return 2
    return smoke(args.name, args.subnet, args.slaves, args.output)


if __name__ == "__main__":
    sys.exit(main())
