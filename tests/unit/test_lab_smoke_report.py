"""The smoke command's reading of ansible-playbook's output and of the playbook's report."""

from lambda_testbed.lab.smoke import failures, recap, table

OUTPUT = """\
TASK [hadoop : Verify this host's HDFS daemon is still running] ****************
fatal: [lambda-1-slave-2]: FAILED! => {"changed": false, "rc": 3}

PLAY RECAP *********************************************************************
lambda-1-master : ok=12 changed=3 unreachable=0 failed=0 skipped=4 rescued=0 ignored=0
lambda-1-slave-2 : ok=7 changed=2 unreachable=0 failed=1 skipped=5 rescued=0 ignored=0
"""


def test_recap_and_failures_name_host_and_task() -> None:
    assert recap(OUTPUT)["lambda-1-slave-2"]["failed"] == 1
    assert recap(OUTPUT)["lambda-1-master"]["ok"] == 12
    (line,) = failures(OUTPUT)
    assert line.startswith("hadoop : Verify this host's HDFS daemon is still running: fatal:")
    assert "lambda-1-slave-2" in line


def result(phase, service, daemon, host, ok, check="port 1"):
    return {
        "phase": phase,
        "service": service,
        "daemon": daemon,
        "host": host,
        "check": check,
        "ok": ok,
    }


def test_table_passes_only_when_every_check_passed() -> None:
    good = {
        "hosts": ["m", "s"],
        "not_started": [],
        "results": [
            result("up", "spark", "master", "m", True),
            result("down", "spark", "master", "m", True),
            result("up", "hdfs", "datanode", "s", True),
            result("down", "hdfs", "datanode", "s", True),
        ],
    }
    text, ok = table(good)
    assert ok
    assert text.splitlines()[1].split()[:2] == ["hdfs", "datanode"]  # start order

    still_up = dict(
        good, results=[*good["results"][:3], result("down", "hdfs", "datanode", "s", False)]
    )
    text, ok = table(still_up)
    assert not ok and text.splitlines()[1].rstrip().endswith("NO")

    _, ok = table(dict(good, not_started=["s"]))
    assert not ok
    _, ok = table({})
    assert not ok  # no checks at all is a failure, not a pass
