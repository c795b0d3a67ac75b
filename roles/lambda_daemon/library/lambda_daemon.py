#!/usr/bin/python
"""Is the daemon a pid file names running; record its pid; stop it."""

from __future__ import annotations

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: lambda_daemon
short_description: Check, record or stop the daemon a pid file names
description:
  - Reads I(pid_file) and reports whether the process it names is a live daemon of this
    kind: its command line contains I(match), and it is not this check itself or one of
    its parents (a stale pid file can name a pid that was reused since, by any process).
  - With I(record=true), when the pid file names no such daemon, the newest running
    process whose command line contains I(match) is written to I(pid_file), for daemons
    that write no pid file of their own.
  - With I(state=stopped), a running daemon gets SIGTERM, then SIGKILL once it outlived
    I(stop_timeout) seconds, and its pid file is removed.
  - Linux only (reads /proc).
options:
  pid_file:
    description: The pid file.
    type: path
    required: true
  match:
    description: Text the daemon's command line contains (a class name, a config path).
    type: str
    required: true
  state:
    description: C(query) only reports; C(stopped) ends the daemon if it runs.
    type: str
    choices: [query, stopped]
    default: query
  record:
    description: Write the pid of the newest matching process when the pid file names none.
    type: bool
    default: false
  stop_timeout:
    description: Seconds between SIGTERM and SIGKILL with I(state=stopped).
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Check whether the NameNode is running
  lambda_daemon:
    pid_file: /opt/lambda/run/hadoop/hadoop-root-namenode.pid
    match: namenode
  register: namenode

- name: Ensure the Kafka broker is stopped
  lambda_daemon:
    pid_file: /opt/lambda/run/kafka/kafka.pid
    match: /opt/lambda/etc/kafka/server.properties
    state: stopped
    stop_timeout: 30
"""

RETURN = r"""
running:
  description: Whether the daemon runs (after the module's work).
  type: bool
  returned: always
pid:
  description: The daemon's pid, or null when it does not run.
  type: int
  returned: always
forced:
  description: With state=stopped, whether SIGKILL was needed.
  type: bool
  returned: always
"""


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """A process that has not exited (a zombie, waiting for its parent, has)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def start_time(pid: int) -> int | None:
    """Field 22: clock ticks since boot; None if there is no such process."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def this_check() -> set[int]:
    """This process and its parents: their command lines may name the daemon's paths."""
    pids, pid = set(), os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        fields = stat_fields(pid)
        pid = int(fields[1]) if fields else 0  # field 4: the parent's pid
    return pids


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_daemon(pid: int, match: str, own: set[int]) -> bool:
    """A live process of this kind that is not this check."""
    return pid not in own and alive(pid) and match in command_line(pid)


def read_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def newest_matching(match: str, own: set[int]) -> int | None:
    best = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in own:
            continue
        pid = int(entry)
        started = start_time(pid)
        if started is None or not alive(pid) or match not in command_line(pid):
            continue
        if best is None or started > best[0]:
            best = (started, pid)
    return best[1] if best else None


def stop(pid: int, timeout: int) -> bool:
    """SIGTERM, wait up to timeout seconds, then SIGKILL. True when SIGKILL was needed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it exited since the check
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    while alive(pid):
        time.sleep(0.1)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pid_file": {"type": "path", "required": True},
            "match": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["query", "stopped"], "default": "query"},
            "record": {"type": "bool", "default": False},
            "stop_timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    pid_file, match = module.params["pid_file"], module.params["match"]
    own = this_check()
    pid = read_pid(pid_file)
    if pid is not None and not is_daemon(pid, match, own):
        pid = None
    result = {"changed": False, "running": pid is not None, "pid": pid, "forced": False}

    if module.params["record"] and pid is None:
        found = newest_matching(match, own)
        if found is not None:
            result.update(changed=True, running=True, pid=found)
            if not module.check_mode:
                os.makedirs(os.path.dirname(pid_file) or ".", exist_ok=True)
                with open(pid_file, "w") as handle:
                    handle.write(f"{found}\n")

    if module.params["state"] == "stopped" and result["running"]:
        running = result["pid"]
        result.update(changed=True, running=False, pid=None)
        if not module.check_mode:
            result["forced"] = stop(running, module.params["stop_timeout"])
            if read_pid(pid_file) == running:
                os.remove(pid_file)

    module.exit_json(**result)


if __name__ == "__main__":
    main()
