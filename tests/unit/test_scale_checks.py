"""The scale run's end checks and figures (``benchmarks.scale_checks``) on made-up records."""

from __future__ import annotations

import json

import pytest

from benchmarks import scale_checks as checks


def start(pid, ident, group, hosts, t):
    return {"event": "start", "pid": pid, "ident": ident, "group": group, "hosts": hosts,
            "t": t, "chain": None, "playbook": "p.yml"}


def end(pid, ident, t, status="successful"):
    return {"event": "end", "pid": pid, "ident": ident, "t": t, "status": status}


# --- actions and instances --------------------------------------------------------------------


def test_every_accepted_action_ended_passes_with_messages_on_failures():
    rows = {"a": {"state": "succeeded", "error": None},
            "b": {"state": "failed", "error": "start failed at step playbook"},
            "c": {"state": "cancelled", "error": "start cancelled by u"}}
    check = checks.check_actions_ended(["a", "b"], rows)
    assert check.ok, check.detail
    assert "1 cancelled, 1 failed, 1 succeeded" in check.detail


@pytest.mark.parametrize("rows, accepted, needle", [
    ({"a": {"state": "running", "error": None}}, ["a"], "action a is running"),
    ({"a": {"state": "accepted", "error": None}}, [], "action a is accepted"),
    ({"a": {"state": "failed", "error": " "}}, ["a"], "failed with no message"),
    ({}, ["a"], "202 for a but no row"),
])
def test_an_unended_unexplained_or_missing_action_fails(rows, accepted, needle):
    check = checks.check_actions_ended(accepted, rows)
    assert not check.ok
    assert needle in check.detail


def test_instances_in_transition_fail():
    check = checks.check_no_transitional({"i1": {"status": "STARTED"},
                                          "i2": {"status": "STOPPING"}})
    assert not check.ok and check.problems == ["instance i2 is STOPPING"]


def test_states_agree_with_the_servers():
    servers = {"1": {"status": "ACTIVE"}, "2": {"status": "ACTIVE"},
               "3": {"status": "STOPPED"}, "4": {"status": "STOPPED"},
               "5": {"status": "ACTIVE"}, "6": {"status": "STOPPED"}}
    instances = {"up": {"status": "STARTED"}, "down": {"status": "STOPPED"},
                 "half": {"status": "FAILED", "failure_message": "start failed at power_on"}}
    servers_of = {"up": ["1", "2"], "down": ["3", "4"], "half": ["5", "6"]}
    check = checks.check_states_agree(instances, servers_of, servers)
    assert check.ok, check.detail


@pytest.mark.parametrize("instance, server, needle", [
    ({"status": "STARTED"}, {"status": "STOPPED"}, "is STARTED but has servers STOPPED"),
    ({"status": "STOPPED"}, {"status": "ACTIVE"}, "is STOPPED but has servers ACTIVE"),
    ({"status": "FAILED", "failure_message": "x"}, {"status": "ERROR"}, "servers ERROR"),
    ({"status": "FAILED", "failure_message": ""}, {"status": "ACTIVE"}, "with no message"),
    ({"status": "STARTED"}, {"status": "ACTIVE", "task_state": "STOPPING"}, "still STOPPING"),
])
def test_states_that_disagree_fail(instance, server, needle):
    check = checks.check_states_agree({"i": instance}, {"i": ["1"]}, {"1": server})
    assert not check.ok
    assert needle in check.detail


def test_a_server_missing_from_the_cloud_fails():
    check = checks.check_states_agree({"i": {"status": "STOPPED"}}, {"i": ["9"]}, {})
    assert "server 9 not in the cloud" in check.detail


# --- the journal ------------------------------------------------------------------------------


def test_one_attempts_chains_side_by_side_are_not_an_overlap():
    records = [start(1, "a-1-hdfs", "A", ["m", "s1"], 0),
               start(1, "a-1-spark", "A", ["m", "s1"], 0),
               end(1, "a-1-hdfs", 5), end(1, "a-1-spark", 4)]
    runs = checks.journal_runs(records, {})
    assert checks.find_overlaps(runs) == []
    assert checks.check_journal(runs).ok


def test_two_actions_on_one_host_at_once_overlap():
    records = [start(1, "a", "A", ["m"], 0), end(1, "a", 5),
               start(2, "b", "B", ["x", "m"], 4), end(2, "b", 9)]
    [(host, first, second)] = checks.find_overlaps(checks.journal_runs(records, {}))
    assert (host, first.group, second.group) == ("m", "A", "B")


def test_a_killed_workers_run_ends_at_its_kill_time():
    # Worker 1 was killed at t=10 mid-run; worker 2 resumed the same action at t=40.
    records = [start(1, "a-1", "A", ["m"], 0), start(2, "a-2", "A", ["m"], 40), end(2, "a-2", 50)]
    runs = checks.journal_runs(records, {1: 10.0})
    assert [r.killed for r in runs] == [True, False]
    assert runs[0].end == 10.0
    assert checks.check_journal(runs).ok


def test_a_resumed_attempt_while_the_killed_ones_run_still_went_is_an_overlap():
    records = [start(1, "a-1", "A", ["m"], 0), start(2, "a-2", "A", ["m"], 5), end(2, "a-2", 9)]
    runs = checks.journal_runs(records, {1: 10.0})
    assert len(checks.find_overlaps(runs)) == 1
    assert not checks.check_journal(runs).ok


def test_a_run_that_never_ended_without_a_kill_fails():
    runs = checks.journal_runs([start(1, "a", "A", ["m"], 0)], {})
    check = checks.check_journal(runs)
    assert not check.ok and "never ended" in check.detail


def test_back_to_back_runs_do_not_overlap():
    records = [start(1, "a", "A", ["m"], 0), end(1, "a", 5), start(1, "b", "B", ["m"], 5),
               end(1, "b", 6)]
    assert checks.find_overlaps(checks.journal_runs(records, {})) == []


def test_read_journal_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps(start(1, "a", "A", ["m"], 0)) + "\n" + '{"event": "en')
    assert [r["ident"] for r in checks.read_journal(path)] == ["a"]
    assert checks.read_journal(tmp_path / "absent") == []


# --- figures ----------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert checks.percentile(values, 50) == pytest.approx(50.5)
    assert checks.percentile(values, 99) == pytest.approx(99.01)
    assert checks.percentile([7.0], 99) == 7.0
    assert checks.percentile([], 50) is None


def test_rates_and_shares():
    phase = checks.PhaseFigures(workers=2, seconds=120, ended=240,
                                cpu_seconds={"workers": 60.0, "api": 24.0})
    assert phase.actions_per_min_per_worker == 60.0
    assert phase.cpu_share(cores=2) == {"workers": 0.25, "api": 0.1}
    assert checks.ratio(None, 3) is None and checks.ratio(6, 0) is None
    assert checks.fmt(None) == "n/a" and checks.fmt(1234.5) == "1,234.5"


def phase(workers, ended, *, busy, occupancy, backlog_share, in_flight=None, cpu=None):
    return checks.PhaseFigures(
        workers=workers, seconds=60, ended=ended, machine_busy=busy, occupancy=occupancy,
        in_flight=in_flight if in_flight is not None else occupancy * workers * 8,
        backlog=10.0 * backlog_share, backlog_share=backlog_share,
        cpu_seconds=cpu or {"workers": 30.0, "postgres": 10.0, "rabbitmq": 1.0})


@pytest.mark.parametrize("figures, case, needle", [
    # Threads not full and no backlog: nothing saturated.
    (dict(busy=0.5, occupancy=0.6, backlog_share=0.1), "offered", "ceiling was not reached"),
    # A backlog and every thread busy: the workers' concurrency.
    (dict(busy=0.6, occupancy=0.95, backlog_share=0.9), "threads", "more workers help"),
    # The cores full: the CPU, whatever the threads and the backlog, and who used most.
    (dict(busy=0.93, occupancy=0.95, backlog_share=0.9), "cpu", "largest consumer workers"),
    # Work waiting while threads were free: the hand-off, with the database's and broker's CPU.
    (dict(busy=0.5, occupancy=0.5, backlog_share=0.8), "handoff", "PostgreSQL 8%, RabbitMQ 1%"),
])
def test_each_phase_names_what_limited_it(figures, case, needle):
    found, what, detail = checks.phase_limit(phase(2, 100, **figures), cores=2)
    assert found == case
    assert needle in what
    assert "threads" in detail and "backlog" in detail


def test_saturation_when_throughput_grows_with_the_workers_is_their_threads():
    low = phase(2, 100, busy=0.4, occupancy=0.97, backlog_share=0.95)
    high = phase(4, 195, busy=0.7, occupancy=0.95, backlog_share=0.9)
    resource, why = checks.saturating_resource(low, high, cores=2)
    assert resource.startswith("nothing but the workers' own threads")
    assert "x1.95 for workers x2.00" in why


def test_saturation_names_the_cpu_when_the_machine_is_full_with_more_workers():
    low = phase(2, 100, busy=0.7, occupancy=0.97, backlog_share=0.95)
    high = phase(4, 120, busy=0.95, occupancy=0.9, backlog_share=0.9,
                 cpu={"workers": 70.0, "postgres": 20.0})
    resource, _why = checks.saturating_resource(low, high, cores=2)
    assert resource == "machine CPU (busy 95%, largest consumer workers 58%)"


def test_saturation_names_the_offered_load_when_more_workers_had_nothing_to_do():
    low = phase(2, 100, busy=0.5, occupancy=0.95, backlog_share=0.9)
    high = phase(4, 110, busy=0.55, occupancy=0.5, backlog_share=0.05)
    resource, why = checks.saturating_resource(low, high, cores=2)
    assert resource.startswith("nothing at 4 workers: the offered load (2 workers were "
                               "limited by worker threads")
    assert "the ceiling was not reached" in resource
    assert "threads 50% busy" in why


def test_saturation_names_the_offered_load_when_no_phase_had_a_backlog():
    low = phase(2, 50, busy=0.3, occupancy=0.4, backlog_share=0.0)
    high = phase(4, 50, busy=0.3, occupancy=0.2, backlog_share=0.0)
    resource, _why = checks.saturating_resource(low, high, cores=2)
    assert resource.startswith("nothing: the offered load")


def test_saturation_names_the_handoff_when_work_waited_beside_free_threads():
    low = phase(2, 100, busy=0.5, occupancy=0.95, backlog_share=0.9)
    high = phase(4, 110, busy=0.6, occupancy=0.55, backlog_share=0.9)
    resource, _why = checks.saturating_resource(low, high, cores=2)
    assert resource.startswith("the database or the broker")


def test_saturation_says_when_full_threads_were_slowed_by_the_shared_machine():
    # Threads full at both, but each action held its thread 1.6x longer: x1.25, not x2.
    low = phase(2, 100, busy=0.6, occupancy=0.95, backlog_share=0.9, in_flight=15.2)
    high = phase(4, 125, busy=0.8, occupancy=0.95, backlog_share=0.9, in_flight=30.4)
    resource, why = checks.saturating_resource(low, high, cores=2)
    assert resource.startswith("worker threads, with actions slowed by the shared machine")
    assert "x1.60 longer" in resource
    assert "9.1 -> 14.6" in why


def test_thread_seconds_per_action_is_littles_law():
    p = checks.PhaseFigures(workers=2, seconds=60, ended=120, in_flight=16.0)
    assert p.thread_seconds_per_action == pytest.approx(8.0)
    assert checks.PhaseFigures(workers=2, seconds=60).thread_seconds_per_action is None


def test_in_flight_sums_every_kind_of_a_workers_exposition():
    exposition = (
        "# HELP lambda_actions_in_flight Actions running now\n"
        "# TYPE lambda_actions_in_flight gauge\n"
        'lambda_actions_in_flight{kind="start"} 3.0\n'
        'lambda_actions_in_flight{kind="stop"} 2.0\n'
        "# HELP lambda_actions_total Actions ended\n"
        "# TYPE lambda_actions_total counter\n"
        'lambda_actions_total{kind="start",outcome="succeeded"} 40.0\n')
    assert checks.in_flight_of(exposition) == 5.0
    assert checks.in_flight_of("") == 0.0


def test_occupancy_counts_only_the_workers_that_answered():
    # (sum in flight, workers sampled, backlog): a killed worker drops out of a sample.
    samples = [(16.0, 2, 5), (8.0, 1, 0), (12.0, 2, None), (0.0, 0, 3)]
    summary = checks.summarize_occupancy(samples, concurrency=8)
    assert summary["occupancy"] == pytest.approx(36 / 40)
    assert summary["in_flight"] == pytest.approx(12.0)
    assert summary["backlog"] == pytest.approx(8 / 3)
    assert summary["backlog_share"] == pytest.approx(2 / 3)
    assert checks.summarize_occupancy([], concurrency=8)["occupancy"] is None


def test_the_occupancy_timeline_is_by_bucket_and_shows_a_gap():
    samples = [(16.0, 2, 5), (16.0, 2, 5), (0.0, 0, 5), (4.0, 1, 5)]
    times = [1.0, 15.0, 25.0, 65.0]
    timeline = checks.occupancy_timeline(samples, times, concurrency=8, bucket=20.0)
    assert timeline == [1.0, None, None, 0.5]


def test_cpu_per_action_and_the_cpu_bound_rate():
    phase = checks.PhaseFigures(workers=2, seconds=60, ended=100,
                                cpu_seconds={"workers": 30.0, "api": 10.0})
    assert phase.cpu_per_action() == {"workers": 0.3, "api": 0.1}
    assert checks.cpu_bound_actions_per_min(phase.cpu_per_action(), cores=2) == \
        pytest.approx(300.0)
    assert checks.cpu_bound_actions_per_min({}, cores=2) is None
