"""The queueing model printed beside the HTTP benchmark's p99 at the same load."""

from __future__ import annotations

import io

import pytest

from benchmarks.http_bench import HttpReport, Pair, mm1_p99_ratio
from benchmarks.openloop import OpenLoopResult
from benchmarks.report import print_http
from benchmarks.wrk import WrkResult


@pytest.mark.parametrize("load", [0.1, 0.5, 0.9])
def test_servers_of_one_speed_have_one_p99(load):
    assert mm1_p99_ratio(1.0, load) == pytest.approx(1.0)


def test_half_the_products_rate_gives_two_over_r_minus_one():
    assert mm1_p99_ratio(1 / 3, 0.5) == pytest.approx(5.0)
    assert mm1_p99_ratio(2 / 3, 0.5) == pytest.approx(2.0)  # where p99 x bare reaches 2
    # The lighter the load, the nearer the plain service-time ratio 1 / R.
    assert mm1_p99_ratio(1 / 3, 0.01) == pytest.approx(3.0, rel=0.02)


def wrk(rps: float) -> WrkResult:
    return WrkResult(rps=rps, p50_ms=1.0, p99_ms=5.0, requests=int(rps), non_2xx=0,
                     socket_errors=0, raw="")


def paced(rate: float, p99_ms: float) -> OpenLoopResult:
    return OpenLoopResult(rate=rate, achieved=rate, p50_ms=1.0, p99_ms=p99_ms,
                          requests=int(rate), statuses={202: int(rate)}, late=0)


def test_the_paced_table_prints_the_model_and_the_ratio_it_needs():
    report = HttpReport(dispatcher="celery", workers=2, threads=1)
    report.pairs["accept"] = [Pair(wrk(4000), wrk(1200)), Pair(wrk(4000), wrk(1400)),
                              Pair(wrk(4000), wrk(1300))]  # R = 1300 / 4000 = 0.325
    report.paced["accept"] = [Pair(paced(650, 4.0), paced(650, 20.0))]  # f = 0.5
    out = io.StringIO()
    summary = print_http(report, out)
    text = out.getvalue()
    assert summary["RATIO accept"] == "0.33"
    assert "| 5.00 | 5.15 |" in text  # measured p99 x bare, then 2 / 0.325 - 1
    assert "2 or less only when R >= 1 / (2 - f) = 0.67" in text
