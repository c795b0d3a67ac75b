"""Drive ``wrk`` (the HTTP load generator) and read its summary."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")

# Requests share one shape everywhere: the same headers and body for (a) and (b).
_COMMON = """
local token = "{token}"
local headers = {{}}
headers["Authorization"] = "Token " .. token
"""

POST_ONE = _COMMON + """
headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = "action={action}"
wrk.headers = headers
"""

GET_ONE = _COMMON + """
wrk.method = "GET"
wrk.path = "{path}"
wrk.headers = headers
"""

# Each request names a different instance: thread t of n takes ids base+t, base+t+n, ...
# (wrk gives each thread its own Lua state; setup() runs in the main one).
POST_CYCLE = _COMMON + """
headers["Content-Type"] = "application/x-www-form-urlencoded"
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local k = 0
local base, stride, limit = 0, 1, 0
function init(args)
  base = tonumber(args[1]) + tid
  stride = tonumber(args[2])
  limit = tonumber(args[3])
end
function request()
  local n = base + k * stride
  k = k + 1
  if n >= limit then n = limit - 1 end
  local path = string.format("{prefix}%012x/", n)
  return wrk.format("POST", path, headers, "action={action}")
end
"""

# A fixed number of requests per thread, then the thread stops (identity round trips).
GET_COUNTED = GET_ONE + """
local done = 0
local quota = 0
function init(args) quota = tonumber(args[1]) end
function response(status, headers, body)
  done = done + 1
  if done >= quota then wrk.thread:stop() end
end
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    raw: str


def available() -> str | None:
    return shutil.which("wrk")


def write_script(directory: Path, name: str, template: str, **values) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(template.format(**values))
    return path


def parse(output: str) -> WrkResult:
    percentiles = {p: float(v) * _UNITS[u] for p, v, u in _PERCENTILE.findall(output)}
    rps = _RPS.search(output)
    total = _TOTAL.search(output)
    if rps is None or "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    non = _NON_2XX.search(output)
    errors = _ERRORS.search(output)
    return WrkResult(
        rps=float(rps.group(1)), p50_ms=percentiles["50"], p99_ms=percentiles["99"],
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=sum(int(x) for x in errors.groups()) if errors else 0, raw=output)


def run(url: str, script: Path, *, duration: float, connections: int, threads: int = 2,
        args: list[str] | None = None, timeout_s: int = 10) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           f"--timeout={timeout_s}s", "-s", str(script), url]
    if args:
        cmd += ["--", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {cmd}: {proc.stderr or proc.stdout}")
    return parse(proc.stdout)
