"""The orchestration benchmark's arithmetic: rounds, cycles and T(hi)/T(lo); the skeleton
playbooks of Ansible's own share."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from benchmarks.orchestration import OrchestrationResult, Timing, skeleton_playbook

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def timing(hosts: int, action: str, total: float, repeat: int, kind: str = "product"):
    return Timing(kind=kind, action=action, hosts=hosts, total=total, steps={},
                  state="succeeded", error=None, repeat=repeat)


def result_of(rounds: dict[int, dict[int, tuple[float, float]]]) -> OrchestrationResult:
    """rounds: repeat -> hosts -> (start s, stop s), appended in run order."""
    result = OrchestrationResult(mode="test", services=("hdfs",), dispatcher="local")
    for repeat, sizes in rounds.items():
        for hosts, (start, stop) in sizes.items():
            result.timings += [timing(hosts, "start", start, repeat),
                               timing(hosts, "stop", stop, repeat)]
    return result


def test_each_round_is_compared_with_itself_and_the_median_is_reported():
    # Round 2 ran on a slow machine: both sizes took twice as long.
    result = result_of({0: {2: (5, 5), 8: (10, 6)},
                        1: {2: (10, 10), 8: (20, 12)},
                        2: {2: (5, 4), 8: (9, 6)}})
    assert result.cycles("product", 8) == {0: 16, 1: 32, 2: 15}
    assert result.round_ratios(2, 8) == [1.6, 1.6, 15 / 9]
    assert result.round_ratios(2, 8, ("start",)) == [2.0, 2.0, 1.8]
    summary = result.print(io.StringIO())
    assert summary == {"T8/T2": "1.60"}


def test_a_round_missing_an_action_or_a_size_is_left_out():
    result = result_of({0: {2: (5, 5), 8: (10, 10)}, 1: {2: (5, 5)}})
    result.timings.append(timing(8, "start", 30, repeat=1))  # its stop never came
    assert result.cycles("product", 8) == {0: 20}
    assert result.round_ratios(2, 8) == [2.0]
    assert result.cycle("product", 2) == 10


def test_machine_cpu_per_cycle_and_the_floor_it_puts_under_the_ratio(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    result = result_of({0: {2: (5, 5), 8: (10, 6)}, 1: {2: (5, 5), 8: (10, 6)}})
    cpus = {(2, "start"): 4.0, (2, "stop"): 2.0, (8, "start"): 15.0, (8, "stop"): 9.0}
    for t in result.timings:
        t.cpu = cpus[(t.hosts, t.action)] + t.repeat  # round 1 costs 1 CPU-s more per action
    assert result.cycles("product", 8, measure="cpu") == {0: 24.0, 1: 26.0}
    assert result.cycle_cpu(2) == 7.0 and result.cycle_cpu(8) == 25.0

    out = io.StringIO()
    result.print(out)
    text = out.getvalue()
    assert "2 hosts 7.0 CPU-s, 8 hosts 25.0 CPU-s; 3.00 CPU-s per added host" in text
    # 25 CPU-s on 2 cores take >= 12.5 s, against T(2) = 10 s.
    assert "T(8)/T(2) >= 1.25 at this T(2) of 10.00 s" in text


def test_no_cpu_figures_without_cpu_measurements():
    out = io.StringIO()
    result_of({0: {2: (5, 5), 8: (10, 6)}}).print(out)
    assert "machine CPU per start+stop" not in out.getvalue()


def test_power_steps_are_the_median_cycle_of_the_rounds():
    result = result_of({0: {2: (5, 5)}, 1: {2: (5, 5)}, 2: {2: (5, 5)}})
    for t, seconds in zip(result.timings, [1.0, 1.1, 1.0, 2.0, 1.2, 1.0], strict=True):
        t.steps = {"power_on" if t.action == "start" else "power_off": seconds,
                   "playbook": 3.0}
    assert result.cycles("product", 2, measure="power") == {0: 2.1, 1: 3.0, 2: 2.2}
    assert result.power_seconds("product", 2) == 2.2
    assert result.power_seconds("product", 8) == 0.0


START_PLAYS = [
    {"name": "Configure", "hosts": "lambda", "any_errors_fatal": True, "tasks": [
        {"name": "End the play when nothing is listed", "ansible.builtin.meta": "end_play",
         "when": "false"},
        {"name": "Configure", "ansible.builtin.import_role": {"name": "hadoop"}}]},
    {"name": "Start the DataNodes", "hosts": "slaves", "tasks": [
        {"name": "End the play when HDFS is not listed", "meta": "end_play"}]},
    {"name": "Start ZooKeeper", "hosts": "master", "tasks": []},
]


def test_a_skeleton_keeps_the_plays_and_the_tasks_of_the_busiest_host():
    results = [
        # a skipped meta task reports one result for the play, on its first host
        ("Configure", "m", "End the play when nothing is listed"),
        ("Configure", "m", "Write the directory"), ("Configure", "s1", "Write the directory"),
        ("Configure", "m", "Write the files"), ("Configure", "s1", "Write the files"),
        ("Configure", "s1", "Write the slave's file"),
        ("Start the DataNodes", "s1", "Start the DataNode"),
        ("Start the DataNodes", "s1", "Wait for the DataNode"),
    ]
    skeleton = skeleton_playbook(START_PLAYS, results)
    assert [(p["name"], p["hosts"], p["any_errors_fatal"]) for p in skeleton] == [
        ("Configure", "lambda", True), ("Start the DataNodes", "slaves", False),
        ("Start ZooKeeper", "master", False)]
    assert [[t["name"] for t in p["tasks"]] for p in skeleton] == [
        ["1: Write the directory", "2: Write the files", "3: Write the slave's file"],
        ["1: Start the DataNode", "2: Wait for the DataNode"],
        [],  # ran nothing: its service was not listed
    ]
    task = skeleton[0]["tasks"][0]
    assert task["ansible.builtin.command"] == "/bin/true" and task["changed_when"] is False


def test_the_skeletons_of_the_product_playbooks_are_playbooks(tmp_path):
    """Every play of lambda-start/stop.yml, each given the task names of its imports."""
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    assert playbook, "ansible-playbook is installed with the test dependencies"
    for name in ("lambda-start.yml", "lambda-stop.yml"):
        plays = yaml.safe_load((PLAYBOOKS / name).read_text())
        results = [(p["name"], "h", t["name"]) for p in plays for t in p["tasks"]]
        skeleton = skeleton_playbook(plays, results)
        assert [p["name"] for p in skeleton] == [p["name"] for p in plays]
        # the imports, not the end_play
        assert [len(p["tasks"]) for p in skeleton] == [
            sum("ansible.builtin.meta" not in t for t in p["tasks"]) for p in plays]
        path = tmp_path / name
        path.write_text(yaml.safe_dump(skeleton, sort_keys=False))
        check = subprocess.run([playbook, "-i", "localhost,", "--syntax-check", str(path)],
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr


def test_ansible_share_prints_the_ratio_left_were_the_roles_work_free():
    result = result_of({0: {2: (5, 5), 8: (10, 6)}, 1: {2: (5, 5), 8: (10, 6)}})
    for t in result.timings:
        t.steps = {"power_on" if t.action == "start" else "power_off": 1.0 + (t.hosts == 8) / 4}
    result.skeleton = {"repeats": 3, "lo": 2, "hi": 8, "host_tasks": {"start": 97, "stop": 21},
                       2: {"wall": 4.0, "cpu": 4.5}, 8: {"wall": 6.5, "cpu": 11.0}}
    out = io.StringIO()
    result.print(out)
    text = out.getvalue()
    assert "97 + 21 task results at 8 hosts" in text
    assert "2 hosts 4.00 s (4.5 CPU-s), 8 hosts 6.50 s (11.0 CPU-s), +2.50 s" in text
    # T(2) = 10 s; + 2.5 s of the skeleton's + 0.5 s of power steps: 13 / 10.
    assert "T(2) 10.00 s + 2.50 s + 0.50 s more in the power steps: T(8)/T(2) 1.30" in text
