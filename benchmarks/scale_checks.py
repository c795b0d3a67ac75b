"""The scale run's end checks and figures, as pure functions of what the run recorded.

Nothing here starts a process or opens a socket: ``benchmarks.scale`` gathers the rows,
the emulator's servers, the simulated runner's journal and its own kill times, and these
functions judge them. The unit tests (``tests/unit/test_scale_checks.py``) feed them
made-up records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ENDED = ("succeeded", "failed", "cancelled")
TRANSITIONAL = ("STARTING", "STOPPING")
# The servers' statuses each instance status allows once every action has ended.
AGREEING = {"STARTED": {"ACTIVE"}, "STOPPED": {"STOPPED"}}
# A FAILED instance may be half way: a start that failed in its playbook has every VM on, a
# stop that failed in its playbook has them on too, a start or stop cancelled (or failed)
# while powering leaves some on and some off. What it may not have is a VM in any other
# status (ERROR, BUILD, one still in transition): the next start or stop begins from
# ACTIVE or STOPPED VMs, and FAILED allows both.
FAILED_ALLOWS = {"ACTIVE", "STOPPED"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _problems(name: str, ok_detail: str, problems: list[str], shown: int = 10) -> Check:
    if not problems:
        return Check(name, True, ok_detail)
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return Check(name, False, f"{len(problems)} problems: " + "; ".join(problems[:shown]) + more,
                 problems)


# --- the actions ----------------------------------------------------------------------------


def check_actions_ended(accepted: Iterable[str], rows: Mapping[str, Mapping]) -> Check:
    """Every action the driver got a 202 for, and every action row, has ended: succeeded,
    failed with a message, or cancelled (with its message). ``rows``: id -> row with
    ``state`` and ``error``."""
    accepted = set(accepted)
    problems = [f"202 for {a} but no row" for a in sorted(accepted - set(rows))]
    counts: dict[str, int] = {}
    for action_id, row in rows.items():
        state = row["state"]
        counts[state] = counts.get(state, 0) + 1
        if state not in ENDED:
            problems.append(f"action {action_id} is {state}")
        elif state != "succeeded" and not (row.get("error") or "").strip():
            problems.append(f"action {action_id} {state} with no message")
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    return _problems("every accepted action ended",
                     f"{len(accepted)} accepted by the driver, {len(rows)} rows: {summary}",
                     problems)


def check_no_transitional(instances: Mapping[str, Mapping]) -> Check:
    stuck = [f"instance {i} is {row['status']}" for i, row in sorted(instances.items())
             if row["status"] in TRANSITIONAL]
    return _problems("no instance STARTING or STOPPING",
                     f"{len(instances)} instances, none in transition", stuck)


def check_states_agree(instances: Mapping[str, Mapping], servers_of: Mapping[str, list[str]],
                       servers: Mapping[str, Mapping]) -> Check:
    """Each instance's status against its VMs in the emulator (``servers``: id -> {status,
    task_state}): STARTED <=> all ACTIVE, STOPPED <=> all STOPPED, FAILED with a message and
    every VM ACTIVE or STOPPED (``FAILED_ALLOWS``). No VM may be in transition."""
    problems = []
    counts: dict[str, int] = {}
    for instance_id, row in sorted(instances.items()):
        status = row["status"]
        counts[status] = counts.get(status, 0) + 1
        seen = []
        for server_id in servers_of.get(instance_id, []):
            server = servers.get(server_id)
            if server is None:
                problems.append(f"instance {instance_id}: server {server_id} not in the cloud")
                continue
            if server.get("task_state"):
                problems.append(f"instance {instance_id}: server {server_id} still "
                                f"{server['task_state']}")
            seen.append(server["status"])
        allowed = AGREEING.get(status, FAILED_ALLOWS if status == "FAILED" else set())
        wrong = sorted({s for s in seen if s not in allowed})
        if wrong:
            problems.append(f"instance {instance_id} is {status} but has servers "
                            f"{'/'.join(wrong)} ({len(seen)} servers)")
        if status == "FAILED" and not (row.get("failure_message") or "").strip():
            problems.append(f"instance {instance_id} FAILED with no message")
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    return _problems("instances agree with the emulator's servers", summary, problems)


# --- the simulated runner's journal ---------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One playbook run of the journal; ``end`` is its end record's time, or the kill time
    of its process (``killed``), or None when it never ended and its process was not
    killed by the run."""

    pid: int
    ident: str
    group: str
    hosts: tuple[str, ...]
    start: float
    end: float | None
    status: str | None
    killed: bool = False


def read_journal(path: Path) -> list[dict]:
    """The journal's records; a line cut short (its writer killed mid-write) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def journal_runs(records: Iterable[Mapping], kills: Mapping[int, float]) -> list[Run]:
    """Pair each run's start with its end (by pid and ident); a start with no end ends at
    its process's kill time when the run killed that process."""
    starts: dict[tuple[int, str], Mapping] = {}
    ends: dict[tuple[int, str], Mapping] = {}
    for record in records:
        key = (int(record["pid"]), str(record["ident"]))
        (starts if record["event"] == "start" else ends)[key] = record
    runs = []
    for key, start in starts.items():
        pid, ident = key
        end = ends.get(key)
        if end is not None:
            runs.append(Run(pid, ident, str(start["group"]), tuple(start.get("hosts") or ()),
                            float(start["t"]), float(end["t"]), end.get("status")))
        else:
            killed_at = kills.get(pid)
            runs.append(Run(pid, ident, str(start["group"]), tuple(start.get("hosts") or ()),
                            float(start["t"]), killed_at, None, killed=killed_at is not None))
    return sorted(runs, key=lambda r: r.start)


def find_overlaps(runs: Iterable[Run]) -> list[tuple[str, Run, Run]]:
    """Pairs of runs on one host at the same time that are not one attempt's own runs side
    by side (same action and same process): two actions, or one action in two processes
    (a resumed attempt while the killed one's playbook still ran). A run that never ended
    counts as running to the end of time."""
    by_host: dict[str, list[Run]] = {}
    for run in runs:
        for host in run.hosts:
            by_host.setdefault(host, []).append(run)
    found = []
    for host, host_runs in by_host.items():
        host_runs.sort(key=lambda r: r.start)
        active: list[Run] = []
        for run in host_runs:
            active = [a for a in active if a.end is None or a.end > run.start]
            for other in active:
                if other.group != run.group or other.pid != run.pid:
                    found.append((host, other, run))
            active.append(run)
    return found


def check_journal(runs: list[Run]) -> Check:
    problems = []
    for run in runs:
        if run.end is None:
            problems.append(f"run {run.ident} of action {run.group} (pid {run.pid}) never "
                            "ended and its process was not killed")
    for host, a, b in find_overlaps(runs):
        problems.append(f"host {host}: action {a.group} (pid {a.pid}, {a.start:.2f}-"
                        f"{a.end if a.end is None else round(a.end, 2)}) and action {b.group} "
                        f"(pid {b.pid}, from {b.start:.2f})")
    killed = sum(r.killed for r in runs)
    return _problems("no two runs on the same hosts at once",
                     f"{len(runs)} playbook runs, {killed} cut by a worker's kill", problems)


# --- figures ----------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def per_minute(count: int, seconds: float, workers: int) -> float | None:
    if seconds <= 0 or workers <= 0:
        return None
    return count / (seconds / 60.0) / workers


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass
class PhaseFigures:
    """What one phase (a number of workers) measured; None: not measured."""

    workers: int
    seconds: float
    ended: int = 0  # actions that ended within the phase's window
    accept_ms: list[float] = field(default_factory=list)
    pg_transactions: int | None = None
    worker_statements: int | None = None
    rss_mb: list[float] = field(default_factory=list)  # each worker's peak
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # group -> CPU-s
    machine_busy: float | None = None  # share of all cores busy, 0-1
    # Sampled every second from the live workers' in-flight gauges: the mean of their sum,
    # and that over the live workers' threads (occupancy, 0-1).
    in_flight: float | None = None
    occupancy: float | None = None
    # Actions no worker holds (accepted, or handed back), sampled with the gauges: the mean,
    # and the share of the samples in which there was at least one.
    backlog: float | None = None
    backlog_share: float | None = None
    occupancy_timeline: list[float | None] = field(default_factory=list)  # by 20 s
    queue_wait_s: list[float] = field(default_factory=list)  # accepted -> claimed

    @property
    def actions_per_min_per_worker(self) -> float | None:
        return per_minute(self.ended, self.seconds, self.workers)

    @property
    def thread_seconds_per_action(self) -> float | None:
        """Seconds an action holds a worker thread (Little's law: mean in flight / rate)."""
        return ratio(self.in_flight, self.ended / self.seconds if self.seconds else None)

    def cpu_per_action(self) -> dict[str, float]:
        """Each group's CPU-seconds per action ended in the phase."""
        return {g: s / self.ended for g, s in self.cpu_seconds.items()} if self.ended else {}

    def cpu_share(self, cores: int) -> dict[str, float]:
        """Each group's CPU as a share of the machine's (all cores) over the phase."""
        capacity = self.seconds * cores
        return {g: s / capacity for g, s in self.cpu_seconds.items()} if capacity else {}


IN_FLIGHT = "lambda_actions_in_flight"


def in_flight_of(exposition: str) -> float:
    """The sum of the in-flight gauge (every kind) in a Prometheus text exposition."""
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               if family.name == IN_FLIGHT for sample in family.samples
               if sample.name == IN_FLIGHT)


def summarize_occupancy(samples: list[tuple[float, int, int | None]],
                        concurrency: int) -> dict:
    """Means of ``Occupancy``'s samples; occupancy is the in-flight over the threads of the
    workers that answered, sample by sample (time-weighted)."""
    counted = [s for s in samples if s[1]]
    capacity = sum(workers * concurrency for _f, workers, _b in counted)
    backlogs = [b for _f, _w, b in samples if b is not None]
    return {
        "samples": len(samples),
        "in_flight": sum(f for f, _w, _b in counted) / len(counted) if counted else None,
        "occupancy": sum(f for f, _w, _b in counted) / capacity if capacity else None,
        "backlog": sum(backlogs) / len(backlogs) if backlogs else None,
        "backlog_share": sum(b > 0 for b in backlogs) / len(backlogs) if backlogs else None,
    }


def occupancy_timeline(samples: list[tuple[float, int, int | None]], times: list[float],
                       concurrency: int, bucket: float = 20.0) -> list[float | None]:
    """Occupancy (``summarize_occupancy``'s) of each ``bucket`` seconds of the samples, in
    order: where a fault's recovery left the threads idle."""
    buckets: dict[int, list] = {}
    for sample, t in zip(samples, times, strict=True):
        buckets.setdefault(int(t // bucket), []).append(sample)
    last = max(buckets, default=-1)
    return [summarize_occupancy(buckets.get(n, []), concurrency)["occupancy"]
            for n in range(last + 1)]


# What counts as full: the workers' threads, the machine's cores; and as a backlog: work
# waiting for a worker in most of the phase's samples.
THREADS_FULL = 0.85
CPU_FULL = 0.85
BACKLOG_MOST = 0.5


def phase_limit(p: PhaseFigures, cores: int) -> tuple[str, str, str]:
    """What limited one phase's throughput: ``(case, what, figures)``, the case one of

    - ``cpu``: the machine's cores were busy (``CPU_FULL``), whatever else was seen;
    - ``threads``: a backlog and the workers' threads full: their concurrency is the limit;
    - ``handoff``: a backlog while threads were free: work waited for a claim, not for a
      thread, so the hand-off (the broker's delivery, the claim in the database) held it;
    - ``offered``: no backlog: the users asked for less than the workers could do."""
    busy = p.machine_busy or 0.0
    shares = p.cpu_share(cores)
    top, top_share = max(shares.items(), key=lambda kv: kv[1]) if shares else ("n/a", 0.0)
    occupancy = p.occupancy or 0.0
    backlog = (p.backlog_share or 0.0) >= BACKLOG_MOST
    figures = (f"threads {100 * occupancy:.0f}% busy, a backlog in "
               f"{100 * (p.backlog_share or 0):.0f}% of samples (mean {fmt(p.backlog)}), "
               f"machine CPU {100 * busy:.0f}% busy")
    if busy >= CPU_FULL:
        return "cpu", (f"machine CPU (busy {100 * busy:.0f}%, largest consumer {top} "
                       f"{100 * top_share:.0f}%)"), figures
    if backlog and occupancy >= THREADS_FULL:
        return "threads", "worker threads (their concurrency: more workers help)", figures
    if backlog:
        return "handoff", (
            f"the database or the broker (work waited while threads were free; PostgreSQL "
            f"{100 * shares.get('postgres', 0):.0f}%, RabbitMQ "
            f"{100 * shares.get('rabbitmq', 0):.0f}% of the CPU)"), figures
    return "offered", ("nothing: the offered load (threads not full, no backlog; the "
                       "ceiling was not reached)"), figures


def saturating_resource(low: PhaseFigures, high: PhaseFigures, cores: int) -> tuple[str, str]:
    """The first resource that saturated as workers went from ``low`` to ``high``, and why.

    Each phase's limit is ``phase_limit``'s; the verdict is the one at the most workers,
    read against the fewer: threads still full at ``high`` say nothing else ran out (more
    workers help), unless each action held its thread much longer while throughput lagged
    (the shared machine slowed them); CPU or the hand-off at ``high`` is the resource that
    ran out; no backlog at ``high`` says the ceiling was not reached."""
    low_rate = low.ended / low.seconds if low.seconds else 0
    high_rate = high.ended / high.seconds if high.seconds else 0
    scale = high.workers / low.workers
    gain = high_rate / low_rate if low_rate else float("inf")
    low_case, low_what, low_figures = phase_limit(low, cores)
    high_case, high_what, high_figures = phase_limit(high, cores)
    t_low, t_high = low.thread_seconds_per_action, high.thread_seconds_per_action
    why = (f"throughput x{gain:.2f} for workers x{scale:.2f}; seconds in a thread per "
           f"action {fmt(t_low)} -> {fmt(t_high)}; {low.workers} workers: {low_what}: "
           f"{low_figures}; {high.workers} workers: {high_what}: {high_figures}")
    if high_case == "threads":
        if t_low and t_high and t_high / t_low >= 1.2 and gain < 0.9 * scale:
            return (f"worker threads, with actions slowed by the shared machine (each held "
                    f"its thread x{t_high / t_low:.2f} longer, machine CPU "
                    f"{100 * (high.machine_busy or 0):.0f}% busy)"), why
        return (f"nothing but the workers' own threads: throughput grew with the workers "
                f"(x{gain:.2f} for x{scale:.2f}); more workers help"), why
    if high_case in ("cpu", "handoff"):
        return high_what, why
    if low_case != "offered":
        return (f"nothing at {high.workers} workers: the offered load ({low.workers} "
                f"workers were limited by {low_what.split(' (')[0]}; {high.workers} had "
                "threads free and no backlog); the ceiling was not reached"), why
    return ("nothing: the offered load (no backlog in either phase); the ceiling was not "
            "reached"), why


def cpu_bound_actions_per_min(per_action: Mapping[str, float], cores: int) -> float | None:
    """Actions a minute at which the CPU these groups spend per action fills ``cores``."""
    total = sum(per_action.values())
    return cores * 60.0 / total if total > 0 else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
