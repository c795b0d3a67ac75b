"""Build ``benchmarks/data/playbook_timings.json`` from real runs' ansible-runner artifacts.

    python -m benchmarks.record_timings --source demo --where "make demo, ..." RUN_DIR...

Each RUN_DIR is a run directory the service's runner made (``<ident>-<n>/`` holding
``inventory/hosts`` and ``artifacts/<ident>/job_events/``), or a directory of them (a state
dir's ``runs/``). Of each playbook, the latest successful run is kept. For every task, in
the order the run reached it, it keeps per inventory group (master, slaves) the first host's
status and message and the slowest host's duration, plus the task's span (first host's
start to last host's result) and the gap before it; per run, the time from the run's start
to Ansible's first event and from its last event to the run's end. The source's recordings
replace any earlier ones of that source; the other sources stay.

Messages are those the real runner would store (``api.adapters.ansible``'s reading of each
result), with what names the recorded hosts replaced by placeholders the simulated runner
fills in (``<host>``, ``<ip>``, ``<master>``, ``<master_ip>``) and local paths by ``<path>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

# The real runner's own reading of the events: the recorded results are what it stores.
from api.adapters.ansible import _RESULT_EVENTS, RUN_DIR_FLAG, _clip, _result_message
from benchmarks.simulated_runner import (
    DEFAULT_TIMINGS,
    HOST,
    IP,
    MASTER,
    MASTER_IP,
    parse_inventory,
)

ROOT = Path(__file__).resolve().parent.parent


def _created(event: dict) -> float:
    return datetime.fromisoformat(event["created"]).timestamp()


def _events(run_dir: Path) -> list[dict]:
    events = []
    for path in run_dir.glob("artifacts/*/job_events/*.json"):
        try:
            events.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a partial event file of a run that was killed
    return sorted(events, key=lambda e: e.get("counter", 0))


def _status(run_dir: Path) -> tuple[str | None, float | None]:
    for path in run_dir.glob("artifacts/*/status"):
        return path.read_text().strip(), path.stat().st_mtime
    return None, None


def _placeholders(message: str | None, host, hosts) -> str | None:
    if not message:
        return message
    master = next((h for h in hosts if h.group == "master"), None)
    names = [(host.name, HOST)]
    if host.ip:
        names.append((host.ip, IP))
    if master is not None:
        names.append((master.name, MASTER))
        if master.ip:
            names.append((master.ip, MASTER_IP))
    for value, placeholder in names:
        message = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w-]|\.\d)", placeholder, message)
    # Paths of the machine it was recorded on (the repository, the demo's state dir in it).
    return re.sub(rf"{re.escape(str(ROOT))}[^\s'\",;]*", "<path>", message)


def record_run(run_dir: Path) -> dict | None:
    """One run's playbook and tasks, or None if it is not a complete, successful run."""
    status, ended = _status(run_dir)
    events = _events(run_dir)
    started_at = next((e for e in events if e.get("event") == "playbook_on_start"), None)
    stats = next((e for e in events if e.get("event") == "playbook_on_stats"), None)
    if status != "successful" or started_at is None or stats is None:
        return None
    hosts = parse_inventory((run_dir / "inventory" / "hosts").read_text())
    by_name = {h.name: h for h in hosts}
    playbook = Path(started_at["event_data"]["playbook"]).name
    tasks: dict[str, dict] = {}  # task uuid -> task, in the order first reached
    first_start: dict[str, float] = {}
    last_result: dict[str, float] = {}
    for event in events:
        data = event.get("event_data") or {}
        uuid = data.get("task_uuid")
        name = event.get("event")
        if name == "runner_on_start" and uuid:
            first_start.setdefault(uuid, _created(event))
            tasks.setdefault(uuid, {"play": data.get("play") or None,
                                    "task": str(data.get("task") or "-"),
                                    "role": data.get("role") or None, "hosts": {}})
        elif name in _RESULT_EVENTS and uuid in tasks:
            last_result[uuid] = _created(event)
            host = by_name.get(str(data.get("host")))
            if host is None:
                continue
            res = data.get("res")
            state = _RESULT_EVENTS[name]
            if state == "ok" and isinstance(res, dict) and res.get("changed"):
                state = "changed"
            message = _result_message(res, state)
            if state == "failed" and data.get("ignore_errors"):
                message = _clip(f"ignored: {message}" if message else "ignored")
            duration = data.get("duration")
            duration = float(duration) if isinstance(duration, (int, float)) else 0.0
            group = tasks[uuid]["hosts"]
            if host.group not in group:
                group[host.group] = {"status": state, "duration": round(duration, 3),
                                     "message": _placeholders(message, host, hosts)}
            else:
                group[host.group]["duration"] = max(group[host.group]["duration"],
                                                    round(duration, 3))
    previous_end = _created(started_at)
    recorded = []
    for uuid, task in tasks.items():
        if not task["hosts"]:
            continue
        start = first_start[uuid]
        end = last_result.get(uuid, start)
        task["gap"] = round(max(start - previous_end, 0.0), 3)
        task["span"] = round(max(end - start, 0.0), 3)
        previous_end = max(previous_end, end)
        recorded.append(task)
    run_started = (run_dir / RUN_DIR_FLAG).stat().st_mtime
    return {
        "playbook": playbook,
        "ident": run_dir.name,
        "recorded_at": datetime.fromtimestamp(run_started, UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(ended - run_started, 3),
        "startup": round(max(_created(started_at) - run_started, 0.0), 3),
        "teardown": round(max(ended - _created(stats), 0.0) + max(
            _created(stats) - previous_end, 0.0), 3),
        "shape": {group: sum(1 for h in hosts if h.group == group)
                  for group in dict.fromkeys(h.group for h in hosts)},
        "tasks": recorded,
    }


def run_dirs(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / RUN_DIR_FLAG).exists():
            found.append(path)
        else:
            found.extend(p for p in sorted(path.iterdir()) if (p / RUN_DIR_FLAG).exists())
    return found


def record(paths: list[Path]) -> dict[str, dict]:
    """The latest successful run of each playbook among ``paths``."""
    latest: dict[str, dict] = {}
    for run_dir in run_dirs(paths):
        run = record_run(run_dir)
        if run is None:
            continue
        kept = latest.get(run["playbook"])
        if kept is None or run["recorded_at"] >= kept["recorded_at"]:
            latest[run["playbook"]] = run
    return dict(sorted(latest.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, or their parent")
    parser.add_argument("--source", required=True, help="lab | demo")
    parser.add_argument("--where", required=True,
                        help="where and how the runs were made (cluster, daemons, machine)")
    parser.add_argument("--standin-latency", type=json.loads, default=None,
                        help="the stand-ins' start-to-ready delays, as JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_TIMINGS)
    args = parser.parse_args(argv)
    playbooks = record(args.runs)
    if not playbooks:
        print("no complete, successful run found", file=sys.stderr)
        return 1
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("about", (
        "Per-task timings and per-host results of the playbooks, recorded from real runs by "
        "benchmarks/record_timings.py; replayed by benchmarks/simulated_runner.py."))
    sources = data.setdefault("sources", {})
    shapes = {json.dumps(p["shape"], sort_keys=True) for p in playbooks.values()}
    sources[args.source] = {
        "where": args.where,
        "recorded": min(p["recorded_at"] for p in playbooks.values()),
        "cluster": [json.loads(s) for s in sorted(shapes)],
        "standin_latency": args.standin_latency,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "playbooks": playbooks,
    }
    data["default_source"] = "lab" if "lab" in sources else args.source
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(args.out)
    for name, run in playbooks.items():
        print(f"{args.source}: {name}: {len(run['tasks'])} tasks, {run['wall_seconds']:.1f}s "
              f"({run['ident']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
