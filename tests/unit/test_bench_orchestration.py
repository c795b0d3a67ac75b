"""The orchestration benchmark's arithmetic and its CPU-counting wrapper."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

import pytest

from benchmarks import ctrlcpu
from benchmarks.orchestration import Cycle, OrchestrationResult
from benchmarks.run import SUMMARY_KEYS, main


def result_of(cycles: list[tuple[str, int, int, float]], failed=()) -> OrchestrationResult:
    """cycles: (kind, hosts, repeat, ansible CPU-s)."""
    result = OrchestrationResult(mode="test", services=("hdfs",), dispatcher="local")
    result.cycles = [Cycle(kind, hosts, repeat, wall=10.0, cpu=cpu, ok=(kind, hosts, repeat)
                           not in failed) for kind, hosts, repeat, cpu in cycles]
    return result


def test_the_slope_of_two_sizes_is_the_cpu_per_added_host():
    assert ctrlcpu.per_host_slope({2: 10.0, 8: 22.0}) == pytest.approx(2.0)


def test_the_slope_of_more_sizes_is_the_least_squares_one():
    # 4 hosts sits 1 CPU-s above the line through 2 and 8 (slope 2): the fit lowers it.
    assert ctrlcpu.per_host_slope({2: 10.0, 4: 15.0, 8: 22.0}) == pytest.approx(55 / 28)


def test_one_size_has_no_slope():
    assert ctrlcpu.per_host_slope({2: 10.0}) is None
    assert ctrlcpu.per_host_slope({2: 10.0, 8: None}) is None


def test_the_summary_gives_the_product_and_plain_slopes_of_the_round_medians():
    result = result_of([
        ("product", 2, 0, 10.0), ("product", 2, 1, 12.0), ("product", 2, 2, 40.0),
        ("product", 8, 0, 25.0), ("product", 8, 1, 22.0), ("product", 8, 2, 24.0),
        ("plain", 2, 0, 8.0), ("plain", 2, 1, 9.0), ("plain", 2, 2, 7.0),
        ("plain", 8, 0, 17.0), ("plain", 8, 1, 20.0), ("plain", 8, 2, 20.0),
    ])
    out = io.StringIO()
    summary = result.print(out)
    # medians: product 12 -> 24, plain 8 -> 20, over 6 added hosts
    assert summary == {"CTRL_CPU_PER_HOST": "2.00", "CTRL_CPU_PER_HOST_PLAIN": "2.00"}
    assert "| 2 | 10.00 | 12.00 | - | 10.00 | 8.00 |" in out.getvalue()


def test_failed_cycles_are_left_out_and_counted():
    result = result_of([("product", 2, 0, 10.0), ("product", 2, 1, 100.0),
                        ("product", 8, 0, 16.0)], failed={("product", 2, 1)})
    out = io.StringIO()
    assert result.print(out) == {"CTRL_CPU_PER_HOST": "1.00"}  # no plain cycles: no figure
    assert "failed cycles (left out): 1" in out.getvalue()


def test_run_prints_the_seven_summary_lines_last(capsys):
    assert main(["--skip-http", "--skip-orchestration", "--skip-chains"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-7:] == [f"{key} n/a" for key in SUMMARY_KEYS]
    assert SUMMARY_KEYS[-4:] == ("CTRL_CPU_PER_HOST", "CTRL_CPU_PER_HOST_PLAIN",
                                 "CHAINS_RATIO", "CHECKS_SHARE")


BURN = ("import pathlib, sys, time\nt = time.process_time()\n"
        "while time.process_time() - t < {s}: pass\npathlib.Path(sys.argv[1]).touch()\n")


def test_the_wrapper_counts_processes_that_daemonized_and_closes_ssh_masters(tmp_path):
    """An orphaned grandchild's CPU is counted (the wrapper is its subreaper), and a
    surviving process named ssh, as a ControlPersist master, is ended rather than waited."""
    burner = tmp_path / "burn.py"
    burner.write_text(BURN.format(s=0.5))
    fake_ssh = tmp_path / "ssh"
    shutil.copy(shutil.which("sleep"), fake_ssh)
    log = tmp_path / "cpu.jsonl"
    wrapper = ctrlcpu.install_wrapper(tmp_path / "bin", log, real=shutil.which("sh"))
    # "( ... &)" forks twice: the burner and the "master" lose their parent at once; the
    # playbook's stand-in ends once the burner has (its exit a moment after its file).
    done = tmp_path / "done"
    script = (f"({sys.executable} {burner} {done} &); ({fake_ssh} 60 &); "
              f"while [ ! -e {done} ]; do sleep 0.05; done; sleep 0.5")
    started = time.monotonic()
    subprocess.run([str(wrapper), "-c", script, "play.yml"], check=True, timeout=30)
    assert time.monotonic() - started < 10
    runs, offset = ctrlcpu.read_runs(log)
    assert len(runs) == 1 and offset == log.stat().st_size
    assert runs[0].playbook == "play.yml" and runs[0].rc == 0
    assert runs[0].cpu >= 0.45
    assert subprocess.run(["pgrep", "-f", f"{fake_ssh} 60"]).returncode == 1


def test_the_wrapper_passes_the_exit_status_and_the_log_reads_on_from_an_offset(tmp_path):
    log = tmp_path / "cpu.jsonl"
    wrapper = ctrlcpu.install_wrapper(tmp_path / "bin", log, real=shutil.which("sh"))
    assert subprocess.run([str(wrapper), "-c", "exit 3", "a.yml"]).returncode == 3
    _, offset = ctrlcpu.read_runs(log)
    subprocess.run([str(wrapper), "-c", "true", "b.yml"], check=True)
    runs, _ = ctrlcpu.read_runs(log, offset)
    assert [(r.playbook, r.rc) for r in runs] == [("b.yml", 0)]
    assert ctrlcpu.read_runs(tmp_path / "missing.jsonl") == ([], 0)
