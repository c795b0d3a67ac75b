"""The orchestration benchmark's arithmetic: rounds, cycles and T(hi)/T(lo)."""

from __future__ import annotations

import io

from benchmarks.orchestration import OrchestrationResult, Timing


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
