"""The web page's own logic, run by Node.js where it is installed: the event-stream parser
(whatever way the bytes are cut into chunks, the same events come out) and the action
rules as the buttons apply them. The page as a whole runs in a real browser in
tests/e2e/test_web_page.py."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from api.http.webpage import WEB_DIR

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

GREEK = "\u03c3\u03c5\u03c3\u03c4\u03ac\u03b4\u03b1"  # two bytes each in UTF-8
# One stream as the service writes it, with what a parser must also take: CRLF and CR
# line ends, a comment, a multi-line data field, a field without a space, a retry, and
# characters of several bytes in UTF-8.
STREAM = (
    "retry: 2000\r\n\r\n"
    ": keep-alive\n\n"
    'event: state\nid: 1\ndata: {"seq": 1, "state": "accepted"}\n\n'
    'event: task\rid: 2\rdata: {"seq": 2,\rdata: "task": "Ensure ZooKeeper is started \u2714"}\r\r'
    'event:step\nid:3\ndata:{"seq": 3, "name": "playbook", "message": "' + GREEK + '"}\n\n'
    'event: state\r\nid: 5\r\ndata: {"seq": 5, "state": "running"}\r\n\r\n'
    "data: no event type, no id\n\n"
    "event: state\nid: 4\n"  # cut off: never dispatched
)
EXPECTED = [
    {"type": "state", "id": "1", "data": '{"seq": 1, "state": "accepted"}'},
    {"type": "task", "id": "2",
     "data": '{"seq": 2,\n"task": "Ensure ZooKeeper is started \u2714"}'},
    {"type": "step", "id": "3",
     "data": '{"seq": 3, "name": "playbook", "message": "' + GREEK + '"}'},
    {"type": "state", "id": "5", "data": '{"seq": 5, "state": "running"}'},
    {"type": "message", "id": "5", "data": "no event type, no id"},
]

SCRIPT = """
import { EventStreamParser } from "./sse.js";
import { allowed, leftOutHosts } from "./common.js";

const input = JSON.parse(process.argv[2]);
const bytes = new TextEncoder().encode(input.stream);
function parse(size) {
  const parser = new EventStreamParser();
  const events = [];
  for (let at = 0; at < bytes.length; at += size) {
    events.push(...parser.push(bytes.slice(at, at + size)));
  }
  events.push(...parser.push(null));
  return { events, retry: parser.retry };
}
const cuts = {};
for (const size of [1, 2, 3, 7, 64, bytes.length]) {
  cuts[size] = parse(size);
}
const instance = (status, left) => (
  { status: { message: status }, info: { left_out_hosts: left } });
const rules = {};
for (const [status, left] of [["STOPPED", []], ["FAILED", []], ["STARTED", []],
                              ["STARTED", ["s1"]], ["STARTING", ["s1"]], ["STOPPING", []]]) {
  rules[`${status} ${left.length}`] = {
    start: allowed("start", instance(status, left)),
    stop: allowed("stop", instance(status, left)),
  };
}
rules.withoutInfo = allowed("start", { status: { message: "STARTED" } });
const leftOut = [...leftOutHosts({ excluded_hosts: ["s1", 5, ""], left_out_hosts: ["s2"] })];
console.log(JSON.stringify({ cuts, rules, leftOut, none: [...leftOutHosts(null)] }));
"""


def run_node(tmp_path) -> dict:
    for path in WEB_DIR.glob("*.js"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "check.js").write_text(SCRIPT)
    out = subprocess.run([NODE, "check.js", json.dumps({"stream": STREAM})], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_event_stream_parser_and_the_action_rules(tmp_path):
    result = run_node(tmp_path)
    for size, parsed in result["cuts"].items():
        assert parsed["events"] == EXPECTED, size
        assert parsed["retry"] == 2000, size
    assert result["rules"] == {
        "STOPPED 0": {"start": True, "stop": False},
        "FAILED 0": {"start": True, "stop": True},
        "STARTED 0": {"start": False, "stop": True},
        # A start brings left-out hosts back; nothing is allowed while an action runs.
        "STARTED 1": {"start": True, "stop": True},
        "STARTING 1": {"start": False, "stop": False},
        "STOPPING 0": {"start": False, "stop": False},
        "withoutInfo": False,
    }
    assert sorted(result["leftOut"]) == ["s1", "s2"] and result["none"] == []
