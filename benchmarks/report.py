"""Printing the figures: tables for people, then the summary's values."""

from __future__ import annotations

import statistics

from benchmarks.http_bench import mm1_p99_ratio


def _kb(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def print_http(report, out) -> dict[str, str]:
    def p(text=""):
        print(text, file=out, flush=True)

    p()
    p(f"dispatcher on the accept path: {report.dispatcher}")
    p("| scenario | bare req/s | bare p50/p99 ms | product req/s | product p50/p99 ms "
      "| ratio | p99 x bare |")
    p("|---|---|---|---|---|---|---|")
    summary = {}
    for scenario in report.pairs:
        ratio = report.ratio(scenario)
        b_rps, pr_rps = (report.median(scenario, s, "rps") for s in ("bare", "product"))
        b50, b99 = (report.median(scenario, "bare", a) for a in ("p50_ms", "p99_ms"))
        r50, r99 = (report.median(scenario, "product", a) for a in ("p50_ms", "p99_ms"))
        p(f"| {scenario} | {b_rps:.0f} | {b50:.2f} / {b99:.2f} | {pr_rps:.0f} | "
          f"{r50:.2f} / {r99:.2f} | {ratio:.2f} | {r99 / b99:.2f} |")
        summary[f"RATIO {scenario}"] = f"{ratio:.2f}"
    if report.paced:
        p()
        p("p99 at the same load: both servers offered one fixed rate, half the product's "
          "median req/s above (open loop, latency from when each request was due); medians "
          "of the interleaved rounds, p99 x bare the median of the rounds' own:")
        p("| scenario | offered req/s | answered req/s (bare / product) | bare p50/p99 ms "
          "| product p50/p99 ms | p99 x bare | M/M/1 model |")
        p("|---|---|---|---|---|---|---|")
        for scenario, pairs in report.paced.items():
            b = {a: report.paced_median(scenario, "bare", a)
                 for a in ("achieved", "p50_ms", "p99_ms")}
            r = {a: report.paced_median(scenario, "product", a)
                 for a in ("achieved", "p50_ms", "p99_ms")}
            p(f"| {scenario} | {pairs[0].bare.rate:.0f} | {b['achieved']:.0f} / "
              f"{r['achieved']:.0f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
              f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} | "
              f"{report.paced_p99_ratio(scenario):.2f} | "
              f"{mm1_p99_ratio(report.ratio(scenario), report.paced_load(scenario)):.2f} |")
        load = statistics.median(report.paced_load(s) for s in report.paced)
        p(f"M/M/1 model: each server one queue, its service time the inverse of its req/s "
          f"above, both offered {load:.2f} of the product's: p99 x bare = (1 - f R) / "
          f"(R (1 - f)) for the ratio R at the offered fraction f, which is 2 or less only "
          f"when R >= 1 / (2 - f) = {1 / (2 - load):.2f}")
    if report.retries:
        p(f"rounds run again because one server worker took (nearly) every connection: "
          f"{report.retries}")
    for note in report.notes:
        p(f"note: {note}")
    ident = report.identity
    if ident:
        p()
        p(f"identity: {ident['requests']} requests with one new token cost "
          f"{ident['identity_calls']} identity calls in {ident['seconds']:.1f} s "
          f"({ident['workers']} server workers, cache TTL {ident['ttl']:g} s: expected "
          f"<= 1 per worker per TTL)")
        p(f"identity: cold token {ident['cold_ms']:.2f} ms vs warm {ident['warm_ms']:.2f} ms "
          f"(median of {ident['samples']}): a cold token adds "
          f"{ident['cold_ms'] - ident['warm_ms']:.2f} ms")
    for name, hwm in report.memory.items():
        parts = ", ".join(_kb(v) for v in hwm.values())
        p(f"memory (VmHWM) {name}: arbiter+workers {parts}; sum {_kb(sum(hwm.values()))}")
    return summary


def print_orchestration(result, out) -> dict[str, str]:
    return result.print(out)
