"""The scale run's simulated playbook runner (benchmarks.simulated_runner): what it replays,
on which hosts, and how it ends. No assertion on wall-clock time."""

from __future__ import annotations

import json
import threading

import pytest

from api.domain.chains import START_CHAINS
from api.domain.model import TaskResult
from api.domain.ports import PlaybookRun
from benchmarks.simulated_runner import (
    SimulatedRunner,
    apply_limit,
    load_timings,
    parse_inventory,
)

MASTER = "lambda-7-master"
SLAVES = [f"lambda-7-slave-{n}" for n in range(1, 10)]


def inventory(slaves: list[str] = SLAVES) -> str:
    lines = ["# Inventory of lambda instance x", "[master]",
             f"{MASTER} ansible_host=10.9.0.1 lambda_host_role=master lambda_node_id=1", "",
             "[slaves]"]
    lines += [f"{name} ansible_host=10.9.0.{n + 2} lambda_host_role=slave lambda_node_id={n + 2}"
              for n, name in enumerate(slaves)]
    lines += ["", "[lambda:children]", "master", "slaves", "", "[lambda:vars]",
              "ansible_connection=local", ""]
    return "\n".join(lines)


def task(name, play="Play", role="r", gap=0.0, span=0.0, **hosts):
    return {"play": play, "task": name, "role": role, "gap": gap, "span": span,
            "hosts": hosts}


def on(status="ok", duration=0.01, message=None):
    return {"status": status, "duration": duration, "message": message}


TIMINGS = {
    "name": "test",
    "playbooks": {
        "one.yml": {"startup": 0.0, "teardown": 0.0, "tasks": [
            task("Group the hosts", master=on(), slaves=on(duration=0.02)),
            task("Start the master", master=on("changed", 0.03, "started on <host> (<ip>)")),
            task("Start a worker", slaves=on("changed", 0.01,
                                             "joined <master> at <master_ip>")),
            task("Check", master=on("skipped"), slaves=on("failed", 0.01, "ignored: meh")),
        ]},
        "slow.yml": {"startup": 0.0, "teardown": 0.0, "tasks": [
            task("First", master=on()),
            task("Take a long time", master=on(duration=60.0)),
        ]},
        **{chain: {"startup": 0.0, "teardown": 0.0, "tasks": [
            task(f"Task of {chain}", master=on())]} for chain in START_CHAINS},
    },
}


def run_of(playbook="one.yml", **kwargs) -> PlaybookRun:
    return PlaybookRun(playbook=playbook, inventory=kwargs.pop("inventory", inventory()),
                       ident="act-1-x", group="act", chain="x", **kwargs)


def runner(**kwargs) -> SimulatedRunner:
    return SimulatedRunner(TIMINGS, **kwargs)


def test_inventory_hosts_and_groups_as_rendered():
    hosts = parse_inventory(inventory())
    assert [h.name for h in hosts] == [MASTER, *SLAVES]
    assert [h.group for h in hosts] == ["master"] + ["slaves"] * 9
    assert hosts[0].ip == "10.9.0.1"


def test_limit_narrows_to_the_named_hosts_and_groups():
    hosts = parse_inventory(inventory())
    assert [h.name for h in apply_limit(hosts, f"{MASTER},{SLAVES[3]}")] == [MASTER, SLAVES[3]]
    assert [h.name for h in apply_limit(hosts, "slaves:!" + SLAVES[0])] == SLAVES[1:]
    assert apply_limit(hosts, None) == hosts


def test_replays_in_recorded_order_on_every_host_of_the_task_groups():
    seen: list[TaskResult] = []
    result = runner().run(run_of(), on_task=seen.append)
    assert result.status == "successful" and result.rc == 0 and result.failure is None
    assert seen == result.tasks
    order = [t.task for t in result.tasks]
    assert order == (["Group the hosts"] * 10 + ["Start the master"] + ["Start a worker"] * 9
                     + ["Check"] * 10)
    by_task = {}
    for t in result.tasks:
        by_task.setdefault(t.task, []).append(t.host)
    assert sorted(by_task["Group the hosts"]) == sorted([MASTER, *SLAVES])
    assert by_task["Start the master"] == [MASTER]
    assert sorted(by_task["Start a worker"]) == sorted(SLAVES)  # 2 recorded slaves -> 9
    first = result.tasks[0]
    assert first.play == "Play" and first.role == "r" and first.status == "ok"


def test_statuses_and_messages_as_recorded_with_the_hosts_named():
    result = runner().run(run_of())
    master = next(t for t in result.tasks if t.task == "Start the master")
    assert master.status == "changed"
    assert master.message == f"started on {MASTER} (10.9.0.1)"
    worker = next(t for t in result.tasks if t.task == "Start a worker")
    assert worker.message == f"joined {MASTER} at 10.9.0.1"
    check = {t.host: t for t in result.tasks if t.task == "Check"}
    assert check[MASTER].status == "skipped"
    # An ignored failure, as the real runner reports it: the run goes on and succeeds.
    assert check[SLAVES[0]].status == "failed" and check[SLAVES[0]].message == "ignored: meh"
    assert all(t.duration is not None for t in result.tasks)


def test_a_limit_leaves_the_other_hosts_out():
    result = runner().run(run_of(limit=f"{MASTER},{SLAVES[1]}"))
    assert {t.host for t in result.tasks} == {MASTER, SLAVES[1]}


def test_a_limit_matching_no_host_fails_as_ansible_does():
    result = runner().run(run_of(limit="nobody"))
    assert result.status == "failed" and result.tasks == []
    assert "no hosts" in result.failure.message


def test_a_whole_playbook_is_its_chains_in_order():
    result = runner().run(run_of("lambda-start.yml"))
    assert result.ok
    assert [t.task for t in result.tasks] == [f"Task of {chain}" for chain in START_CHAINS]


def test_an_unknown_playbook_fails_the_run():
    result = runner().run(run_of("nothing.yml"))
    assert result.status == "failed" and "nothing.yml" in result.failure.message


def test_cancel_ends_the_run_while_a_task_sleeps():
    cancel = threading.Event()
    seen = []

    def on_task(t):
        seen.append(t)
        if t.task == "First":
            threading.Timer(0.05, cancel.set).start()

    done = []
    thread = threading.Thread(target=lambda: done.append(
        runner().run(run_of("slow.yml"), on_task=on_task, cancel=cancel)))
    thread.start()
    thread.join(5)  # the recorded task takes a minute: only the cancel ends it this soon
    assert not thread.is_alive()
    result = done[0]
    assert result.status == "cancelled" and not result.ok
    assert [t.task for t in result.tasks] == ["First"]
    assert result.failure.task == "Take a long time" and result.failure.host == MASTER
    assert "cancelled while this task was running" in result.failure.message


def test_the_timeout_ends_the_run():
    result = runner().run(run_of("slow.yml", timeout=0.2))
    assert result.status == "timeout"
    assert result.failure.message == ("playbook timed out after 0.2s while this task was "
                                      "running")


def test_fail_rate_fails_one_task_on_one_host_and_ends_the_run():
    result = runner(fail_rate=1.0, seed=3).run(run_of())
    assert result.status == "failed" and result.rc == 2
    failed = [t for t in result.tasks if t.status == "failed"
              and not (t.message or "").startswith("ignored")]
    assert failed == [result.failure]
    failure = result.failure
    assert failure.host in [MASTER, *SLAVES] and failure.message
    assert failure.play == "Play" and failure.role == "r"
    # The run ends with the failed task: nothing after it was reported.
    assert result.tasks[-1].task == failure.task


def test_fail_rate_is_seeded_and_zero_never_fails():
    first = runner(fail_rate=0.5, seed=11)
    second = runner(fail_rate=0.5, seed=11)
    outcomes = [[r.run(run_of()).failure for _ in range(6)] for r in (first, second)]
    assert outcomes[0] == outcomes[1]
    assert all(runner(fail_rate=0.0).run(run_of()).ok for _ in range(3))


def test_the_journal_has_a_start_and_an_end_line_per_run(tmp_path):
    journal = tmp_path / "journal.jsonl"
    r = runner(journal=journal)
    r.run(run_of())
    r.run(run_of("slow.yml", timeout=0.1, limit=MASTER))
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(line["event"], line["playbook"]) for line in lines] == [
        ("start", "one.yml"), ("end", "one.yml"), ("start", "slow.yml"), ("end", "slow.yml")]
    start, end = lines[0], lines[1]
    assert start["hosts"] == [MASTER, *SLAVES]
    assert (start["ident"], start["group"], start["chain"]) == ("act-1-x", "act", "x")
    assert "status" not in start and end["status"] == "successful"
    assert start["t"] <= end["t"] and start["pid"] == end["pid"]
    assert lines[2]["hosts"] == [MASTER] and lines[3]["status"] == "timeout"


def test_the_recorded_timings_replay_a_start_of_ten_hosts():
    timings = load_timings()
    assert timings["playbooks"] and timings["name"] in ("lab", "demo")
    result = SimulatedRunner(timings, speed=0.0).run(run_of("lambda-start.yml"))
    assert result.ok, result.failure
    assert {t.host for t in result.tasks} == {MASTER, *SLAVES}


def test_a_speed_below_zero_is_refused():
    with pytest.raises(ValueError):
        runner(speed=-1)
