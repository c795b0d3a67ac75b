"""Hostile names and values against the real inventory and the real role templates.

A lambda instance stored before names were checked (a legacy row, written here straight into
the tables) is read through the repository, rendered as an inventory and used by real
``ansible-inventory`` / ``ansible-playbook``: its hosts appear under their aliases only, no
name adds a variable or runs a template, and ``--limit`` names the hosts as the inventory
does. The service roles' templates are rendered by real Ansible with hostile values (tagged
``!unsafe``, as data that must never be evaluated) and parsed back: XML with ElementTree,
``.properties`` with Java's rules, the env files by ``bash``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert

from api.adapters.db import UnitOfWorkFactory, create_db_engine
from api.adapters.db.engine import migrate
from api.adapters.db.tables import hosts, instances
from api.adapters.inventory import render_inventory
from api.domain import names, services
from api.domain.clock import utcnow
from api.domain.errors import ComputeError
from api.domain.model import ActionState, TaskResult
from api.domain.orchestration import Orchestrator, OrchestratorConfig, OrchestratorDeps
from api.domain.ports import PlaybookResult, PowerOutcome, Server
from api.settings import FILES_ROOT, Settings
from tests.unit.test_services import ALICE

VENV_BIN = Path(sys.executable).parent
INSTANCE_ID = "5f0c7a36-2f7e-4bb3-a1a5-3c8e0e5d2a10"
LEGACY_NAME = "legacy\n[all:vars]\nansible_connection=ssh {{ lookup('pipe', 'id') }}"
# (server id, name, role, ip): every name would be code if written as is.
LEGACY_HOSTS = [
    ("101", "m\nansible_connection=ssh", "master", "127.42.77.1"),
    ("102", "s1 ansible_host=10.6.6.6 lambda_host_role=master", "slave", "127.42.77.2"),
    ("103", "{{ lookup('pipe', 'touch pwned') }}", "slave", "127.42.77.3"),
    ("104", "ansible_python_interpreter=/bin/false", "slave", "127.42.77.4"),
]
# What the hostile values below hold: markup, quotes, shell, Jinja, separators, line ends,
# non-ASCII; each would change the meaning of a file it were written into as is.
HOSTILE = ("x</value></property><property><name>evil</name><value>1 & \"q\" 'q' "
           "$(touch pwned) `touch pwned` ${HOME} {{ 7*7 }} {% raw %} \\ #! =: "
           "\nevil.key=true\n  ü € \U0001f600")


def ansible_env(tmp_path: Path) -> dict:
    return dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
                ANSIBLE_HOME=str(tmp_path / "ansible-home"),
                ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
                ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-tmp"),
                ANSIBLE_ROLES_PATH=str(FILES_ROOT / "roles"),
                ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")


def run_ansible(tmp_path: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(VENV_BIN / command), *args], cwd=FILES_ROOT,
                            env=ansible_env(tmp_path), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


# The role templates, rendered the way the roles render them: hadoop's and spark's own
# configure tasks; kafka's and zookeeper's template tasks start their daemons too, so their
# templates are rendered here with the roles' defaults and vars, and the properties filter
# comes from the role they depend on for it.
RENDER_PLAYBOOK = [
    {"name": "Hadoop and Spark configuration", "hosts": "lambda", "gather_facts": False,
     "tasks": [
         {"name": "Hadoop", "ansible.builtin.import_role": {"name": "hadoop",
                                                             "tasks_from": "configure"}},
         {"name": "Spark", "ansible.builtin.import_role": {"name": "spark",
                                                            "tasks_from": "configure"}},
     ]},
    {"name": "Kafka and ZooKeeper configuration", "hosts": "lambda", "gather_facts": False,
     "roles": ["config_escape"],
     "vars_files": [str(FILES_ROOT / "roles" / r / d / "main.yml")
                    for r in ("kafka", "zookeeper") for d in ("defaults", "vars")
                    if (FILES_ROOT / "roles" / r / d / "main.yml").exists()],
     "tasks": [
         {"name": "Directory", "ansible.builtin.file": {
             "path": "{{ lambda_host_root }}/etc", "state": "directory", "mode": "0755"}},
         {"name": "Kafka", "ansible.builtin.template": {
             "src": str(FILES_ROOT / "roles/kafka/templates/server.properties.j2"),
             "dest": "{{ lambda_host_root }}/etc/server.properties", "mode": "0644"}},
         {"name": "ZooKeeper", "ansible.builtin.template": {
             "src": str(FILES_ROOT / "roles/zookeeper/templates/zoo.cfg.j2"),
             "dest": "{{ lambda_host_root }}/etc/zoo.cfg", "mode": "0644"}},
     ]},
]


def render_configs(tmp_path: Path, inventory: Path, *extra: str) -> None:
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump(RENDER_PLAYBOOK, sort_keys=False))
    run_ansible(tmp_path, "ansible-playbook", "-i", str(inventory), str(playbook), *extra)


# --- parsers ------------------------------------------------------------------------------


def hadoop_xml(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}


def java_properties(path: Path) -> dict[str, str]:
    """``java.util.Properties.load`` of an ISO-8859-1 file."""
    lines = iter(re.split(r"\r\n|\r|\n", path.read_bytes().decode("latin-1")))
    result = {}
    for line in lines:
        line = line.lstrip(" \t\f")
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:  # an odd backslash run
            line = line[:-1] + next(lines, "").lstrip(" \t\f")
        i = 0
        while i < len(line) and line[i] not in "=: \t\f":
            i += 2 if line[i] == "\\" else 1
        key, rest = line[:i], line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        result[_unescape(key)] = _unescape(rest)
    return result


def _unescape(text: str) -> str:
    named = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    units = re.sub(r"\\(u[0-9a-fA-F]{4}|.)",
                   lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "u"
                   and len(m.group(1)) == 5 else named.get(m.group(1), m.group(1)), text)
    return units.encode("utf-16", "surrogatepass").decode("utf-16")


def shell_values(path: Path, *variables: str) -> list[str]:
    script = '. "$1"; shift; for v in "$@"; do printf "%s\\0" "${!v}"; done'
    result = subprocess.run(["bash", "-c", script, "_", str(path), *variables],
                            cwd=path.parent, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\0")[:-1]


# --- a legacy row -------------------------------------------------------------------------


@pytest.fixture
def legacy_database(tmp_path):
    """A database holding one instance whose names were never checked."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lambda.db'}")
    migrate(engine)
    with engine.begin() as conn:
        now = utcnow()
        conn.execute(insert(instances).values(
            id=INSTANCE_ID, owner=ALICE.user_id, name=LEGACY_NAME, status="STARTED",
            services=["hdfs", "yarn", "zookeeper", "kafka", "spark"], failure_message=None,
            created_at=now, updated_at=now))
        conn.execute(insert(hosts), [
            {"instance_id": INSTANCE_ID, "server_id": sid, "position": i, "name": name,
             "role": role, "ip": ip} for i, (sid, name, role, ip) in enumerate(LEGACY_HOSTS)])
    yield UnitOfWorkFactory(engine)
    engine.dispose()


def test_a_legacy_row_becomes_an_inventory_of_aliases_only(legacy_database, tmp_path):
    with legacy_database(readonly=True) as uow:
        instance = uow.instances.get(INSTANCE_ID)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(render_inventory(instance, Settings(ansible_connection="local")))
    aliases = list(names.host_aliases(name for _, name, _, _ in LEGACY_HOSTS))
    assert aliases == ["m-ansible-connection-ssh",
                       "s1-ansible-host-10.6.6.6-lambda-host-role-master",
                       "lookup-pipe-touch-pwned", "ansible-python-interpreter-bin-false"]

    listed = json.loads(run_ansible(tmp_path, "ansible-inventory", "-i", str(inventory),
                                    "--list").stdout)
    assert sorted(listed) == ["_meta", "all", "lambda", "master", "slaves"]
    assert listed["master"]["hosts"] == aliases[:1]
    assert listed["slaves"]["hosts"] == aliases[1:]
    assert not re.search(r"\{\{|\{%|\{#", json.dumps(listed))
    for (_, _, role, ip), alias in zip(LEGACY_HOSTS, aliases, strict=True):
        variables = listed["_meta"]["hostvars"][alias]
        assert variables["ansible_connection"] == "local"
        assert variables["ansible_python_interpreter"] == sys.executable
        assert variables["ansible_host"] == variables["lambda_host_ip"] == ip
        assert variables["lambda_host_role"] == role

    # The real roles write each host's configuration from that inventory.
    render_configs(tmp_path, inventory, "-e", json.dumps(
        {"lambda_host_root": f"{tmp_path}/hosts/{{{{ inventory_hostname }}}}"}))
    assert sorted(p.name for p in (tmp_path / "hosts").iterdir()) == sorted(aliases)
    master_ip = LEGACY_HOSTS[0][3]
    for (_, _, _, ip), alias in zip(LEGACY_HOSTS, aliases, strict=True):
        etc = tmp_path / "hosts" / alias / "etc"
        assert hadoop_xml(etc / "hadoop" / "core-site.xml")["fs.defaultFS"] == \
            f"hdfs://{master_ip}:8020"
        assert hadoop_xml(etc / "hadoop" / "hdfs-site.xml")["dfs.datanode.hostname"] == ip
        assert java_properties(etc / "server.properties")["listeners"] == \
            f"PLAINTEXT://{ip}:9092"
    assert not (FILES_ROOT / "pwned").exists() and not (tmp_path / "pwned").exists()


class _Compute:
    def __init__(self, off: set[str], broken: set[str] = frozenset()):
        self.status = {sid: "STOPPED" if sid in off else "ACTIVE" for sid, *_ in LEGACY_HOSTS}
        self.broken = broken

    def get_server(self, server_id):
        return Server(server_id, f"vm{server_id}", self.status[server_id])

    def _ensure(self, server_id, status):
        if server_id in self.broken:
            raise ComputeError(f"server {server_id} is in ERROR")
        already = self.status[server_id] == status
        self.status[server_id] = status
        return PowerOutcome(self.get_server(server_id), already)

    def ensure_active(self, server_id, timeout, cancel=None):
        return self._ensure(server_id, "ACTIVE")

    def ensure_stopped(self, server_id, timeout, cancel=None):
        return self._ensure(server_id, "STOPPED")


class _Runner:
    def __init__(self):
        self.runs = []

    def run(self, run, on_task=None, cancel=None):
        self.runs.append(run)
        return PlaybookResult("successful", 0, [TaskResult(run.limit or "all", "t", "ok")])


def orchestrate(uow_factory, compute, runner, action: str) -> tuple[str, ActionState]:
    render = partial(render_inventory, settings=Settings(ansible_connection="local"))
    deps = OrchestratorDeps(uow_factory=uow_factory,
                            compute_factory=lambda url, token: compute, runner=runner,
                            render_inventory=render, decrypt_token=lambda c: c,
                            wait_for_ssh=None)
    action_id = services.request_action(uow_factory, ALICE, INSTANCE_ID, action,
                                        encrypt_token=lambda: "token").action.id
    return action_id, Orchestrator(deps, OrchestratorConfig(worker_id="w")).run(action_id)


def test_stop_limits_the_playbook_by_the_inventorys_aliases(legacy_database, tmp_path):
    compute, runner = _Compute(off={"102", "104"}), _Runner()
    action_id, state = orchestrate(legacy_database, compute, runner, "stop")
    assert state is ActionState.SUCCEEDED

    (run,) = runner.runs
    aliases = names.host_aliases(name for _, name, _, _ in LEGACY_HOSTS)
    assert run.limit == f"{aliases[0]},{aliases[2]}"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(run.inventory)
    listed = run_ansible(tmp_path, "ansible", "-i", str(inventory), "lambda", "--limit",
                         run.limit, "--list-hosts").stdout
    assert [line.strip() for line in listed.splitlines()[1:]] == [aliases[0], aliases[2]]
    with legacy_database(readonly=True) as uow:
        step = uow.actions.get(action_id).steps[0]
    assert step.message.endswith(f"skipped hosts already off: {aliases[1]}, {aliases[3]}")


def test_a_power_failure_names_the_host_by_its_alias(legacy_database):
    compute = _Compute(off=set(), broken={"103"})
    _, state = orchestrate(legacy_database, compute, _Runner(), "stop")
    assert state is ActionState.FAILED
    with legacy_database(readonly=True) as uow:
        instance = uow.instances.get(INSTANCE_ID)
    alias = names.host_aliases(name for _, name, _, _ in LEGACY_HOSTS)[2]
    assert f"host {alias} (server 103): server 103 is in ERROR" in instance.failure_message
    assert "\n" not in instance.failure_message


# --- hostile values in the role templates -------------------------------------------------


class _Unsafe(str):
    pass


def _unsafe_representer(dumper, value):
    return dumper.represent_scalar("!unsafe", str(value), style='"')


def test_role_templates_escape_what_they_insert(tmp_path):
    # A path: on one line, and without $VAR, which Ansible's file arguments expand.
    root = f"{tmp_path}/root {HOSTILE}".replace("\n", " ").replace("${HOME}", "HOME")
    java_home = f"/jvm/{HOSTILE}"
    dumper = type("Dumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Unsafe, _unsafe_representer)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.dump({"all": {"children": {"lambda": {"children": {
        "master": {"hosts": {"m": {"lambda_host_ip": _Unsafe(HOSTILE)}}},
        "slaves": {"hosts": {}},
    }, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "lambda_services": ["hdfs", "yarn", "zookeeper", "kafka", "spark"],
    }}}}}, Dumper=dumper, allow_unicode=True))
    # The roles' settings, over their defaults (extra vars win over the plays' vars_files).
    settings = tmp_path / "settings.yml"
    settings.write_text(yaml.dump({
        "lambda_host_root": _Unsafe(root), "hadoop_java_home": _Unsafe(java_home),
        "spark_java_home": _Unsafe(java_home), "hadoop_ident_string": _Unsafe(HOSTILE),
        "spark_daemon_memory": _Unsafe(HOSTILE), "hadoop_nodemanager_vcores": _Unsafe(HOSTILE),
        "zookeeper_4lw_whitelist": _Unsafe(HOSTILE),
        "kafka_zookeeper_connection_timeout_ms": _Unsafe("  " + HOSTILE),
    }, Dumper=dumper, allow_unicode=True))
    render_configs(tmp_path, inventory, "-e", f"@{settings}")
    etc = Path(root) / "etc"

    core = hadoop_xml(etc / "hadoop" / "core-site.xml")
    assert core == {"fs.defaultFS": f"hdfs://{HOSTILE}:8020",
                    "hadoop.tmp.dir": f"{root}/data/hadoop/tmp"}
    hdfs = hadoop_xml(etc / "hadoop" / "hdfs-site.xml")
    assert hdfs["dfs.datanode.hostname"] == HOSTILE
    assert hdfs["dfs.namenode.name.dir"] == f"file://{root}/data/hadoop/name"
    assert "evil" not in hdfs and len(hdfs) == 11
    yarn = hadoop_xml(etc / "hadoop" / "yarn-site.xml")
    assert yarn["yarn.nodemanager.resource.cpu-vcores"] == HOSTILE
    assert yarn["yarn.resourcemanager.address"] == f"{HOSTILE}:8032"
    assert "evil" not in yarn and len(yarn) == 14

    kafka = java_properties(etc / "server.properties")
    assert kafka["listeners"] == kafka["advertised.listeners"] == f"PLAINTEXT://{HOSTILE}:9092"
    assert kafka["zookeeper.connect"] == f"{HOSTILE}:2181"
    assert kafka["zookeeper.connection.timeout.ms"] == "  " + HOSTILE
    assert kafka["log.dirs"] == f"{root}/data/kafka"
    assert "evil.key" not in kafka
    zookeeper = java_properties(etc / "zoo.cfg")
    assert zookeeper["clientPortAddress"] == zookeeper["4lw.commands.whitelist"] == HOSTILE
    assert zookeeper["dataDir"] == f"{root}/data/zookeeper"
    assert "evil.key" not in zookeeper
    assert (etc / "server.properties").read_bytes().isascii()

    assert shell_values(etc / "hadoop" / "hadoop-env.sh", "JAVA_HOME", "HADOOP_IDENT_STRING",
                        "HADOOP_PID_DIR") == [java_home, HOSTILE, f"{root}/run/hadoop"]
    assert shell_values(etc / "spark" / "spark-env.sh", "JAVA_HOME", "SPARK_LOCAL_IP",
                        "SPARK_DAEMON_MEMORY", "SPARK_WORKER_DIR") == [
        java_home, HOSTILE, HOSTILE, f"{root}/data/spark"]
    assert not list(tmp_path.rglob("pwned")) and not (FILES_ROOT / "pwned").exists()
