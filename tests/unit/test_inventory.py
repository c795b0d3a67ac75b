"""render_inventory: the INI text Ansible reads for one instance."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.adapters.inventory import InventoryError, render_inventory
from api.domain import names
from api.domain.model import Host, HostRole, Instance, InstanceStatus
from api.settings import Settings


def make_instance(**changes) -> Instance:
    values = dict(
        id="9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c",
        owner="7d2f3c8e-0b6b-4a53-9d57-2f0c3f1a6b11",
        name="demo-instance",
        status=InstanceStatus.STOPPED,
        services=("spark", "hdfs", "kafka"),
        hosts=(
            Host("101", "lambda-1-master", HostRole.MASTER, "127.42.1.1"),
            Host("102", "lambda 1 slave#1", HostRole.SLAVE, "127.42.1.2"),
            Host("103", "lambda-1-slave-2", HostRole.SLAVE, "127.42.1.3"),
        ),
    )
    values.update(changes)
    return Instance(**values)


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("\n",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def host_vars(parser, group: str) -> dict[str, dict[str, str]]:
    hosts = {}
    for line in parser[group]:
        name, *pairs = line.split()
        hosts[name] = dict(pair.split("=", 1) for pair in pairs)
    return hosts


def group_vars(parser) -> dict[str, str]:
    return dict(line.split("=", 1) for line in parser["lambda:vars"])


def test_groups_hosts_and_per_host_vars():
    parser = parse(render_inventory(make_instance(), Settings()))
    assert list(parser["lambda:children"]) == ["master", "slaves"]
    master = host_vars(parser, "master")
    assert master == {
        "lambda-1-master": {
            "ansible_host": "127.42.1.1",
            "lambda_server_id": '"101"',
            "lambda_host_ip": "127.42.1.1",
            "lambda_host_role": "master",
            "lambda_node_id": "1",
        }
    }
    slaves = host_vars(parser, "slaves")
    # A name that is not a host name (a row older than the checks) becomes an alias.
    assert list(slaves) == ["lambda-1-slave-1", "lambda-1-slave-2"]
    assert slaves["lambda-1-slave-1"]["lambda_host_role"] == "slave"
    assert slaves["lambda-1-slave-2"]["ansible_host"] == "127.42.1.3"
    assert [v["lambda_node_id"] for v in slaves.values()] == ["2", "3"]


def test_hosts_left_out_are_not_written_and_the_others_keep_their_numbers():
    instance = make_instance(left_out_hosts=("lambda 1 slave#1",))
    text = render_inventory(instance, Settings())
    slaves = host_vars(parse(text), "slaves")
    # Slave 2 stays node 3: a Kafka broker's id is kept in its data.
    assert slaves == {"lambda-1-slave-2": {
        "ansible_host": "127.42.1.3", "lambda_server_id": '"103"',
        "lambda_host_ip": "127.42.1.3", "lambda_host_role": "slave", "lambda_node_id": "3"}}
    assert "127.42.1.2" not in text and '"102"' not in text
    assert "# lambda-1-slave-1\n" in text  # named in a comment, by its alias
    with pytest.raises(InventoryError, match="leaves its master out"):
        render_inventory(make_instance(left_out_hosts=("lambda-1-master",)), Settings())


def test_instance_vars_for_ssh_hosts():
    settings = Settings(ssh_user="admin", ssh_port=2222, ssh_key_file="/keys/id_ed25519")
    values = group_vars(parse(render_inventory(make_instance(), settings)))
    assert values["lambda_instance_id"] == "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"
    # Services in start order, as a JSON list.
    assert json.loads(values["lambda_services"]) == ["hdfs", "kafka", "spark"]
    assert values["ansible_connection"] == "ssh"
    assert values["ansible_user"] == "admin"
    assert values["ansible_port"] == "2222"
    assert values["ansible_ssh_private_key_file"] == "/keys/id_ed25519"
    assert values["ansible_python_interpreter"] == "/usr/bin/python3"


def test_local_hosts_use_this_interpreter_and_no_key():
    text = render_inventory(make_instance(), Settings(ansible_connection="local"))
    values = group_vars(parse(text))
    assert values["ansible_connection"] == "local"
    assert values["ansible_python_interpreter"] == sys.executable
    assert "ansible_ssh_private_key_file" not in values


def test_explicit_interpreter_wins():
    text = render_inventory(make_instance(), Settings(), python_interpreter="/opt/py/bin/python3")
    assert group_vars(parse(text))["ansible_python_interpreter"] == "/opt/py/bin/python3"


def test_names_that_sanitise_alike_stay_distinct():
    hosts = (
        Host("1", "m", HostRole.MASTER, "10.0.0.1"),
        Host("2", "node 1", HostRole.SLAVE, "10.0.0.2"),
        Host("3", "node/1", HostRole.SLAVE, "10.0.0.3"),
    )
    slaves = host_vars(parse(render_inventory(make_instance(hosts=hosts), Settings())), "slaves")
    assert list(slaves) == ["node-1", "node-1-2"]


def test_instance_without_master_is_refused():
    hosts = (Host("2", "s", HostRole.SLAVE, "10.0.0.2"),)
    with pytest.raises(InventoryError, match="no master"):
        render_inventory(make_instance(hosts=hosts), Settings())


def test_values_that_would_break_a_line_are_refused():
    hosts = (Host("1", "m", HostRole.MASTER, "10.0.0.1 evil=1"),)
    with pytest.raises(InventoryError, match=r"host m ip .*not an IPv4 address"):
        render_inventory(make_instance(hosts=hosts), Settings())


def test_ansible_reads_the_rendered_inventory(tmp_path):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    path = tmp_path / "hosts.ini"
    path.write_text(render_inventory(make_instance(), Settings(ansible_connection="local")))
    inventory = InventoryManager(loader=DataLoader(), sources=[str(path)])
    assert [h.name for h in inventory.groups["master"].get_hosts()] == ["lambda-1-master"]
    assert len(inventory.groups["lambda"].get_hosts()) == 3
    slave = inventory.get_host("lambda-1-slave-2")
    variables = slave.get_vars()
    assert variables["lambda_host_ip"] == "127.42.1.3"
    group = inventory.groups["lambda"].get_vars()
    services = group["lambda_services"]
    services = json.loads(services) if isinstance(services, str) else services
    assert services == ["hdfs", "kafka", "spark"]


# A row older than the checks: every name below would add a variable, a host or a template
# if it were written as is.
LEGACY_HOSTS = (
    Host("101", "m\nansible_connection=ssh", HostRole.MASTER, "127.42.9.1"),
    Host("102", "s ansible_host=10.6.6.6 lambda_host_role=master", HostRole.SLAVE,
         "127.42.9.2"),
    Host("103", "{{ lookup('pipe', 'touch /tmp/pwned') }}", HostRole.SLAVE, "127.42.9.3"),
    Host("104", "\"q'=[evil]#", HostRole.SLAVE, "127.42.9.4"),
    Host("105", "ansible_python_interpreter", HostRole.SLAVE, "127.42.9.5"),
    Host("106", "master", HostRole.SLAVE, "127.42.9.6"),
)
LEGACY_NAME = "demo\n[evil:vars]\nansible_connection=local {{ 7*7 }}\u2028x"


def ansible_inventory(tmp_path, text: str, *args: str) -> dict:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "ansible-inventory"), "-i", str(path), "--list", *args],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
                 ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_NOCOLOR="1"))
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_hostile_names_add_no_variable_host_group_or_template(tmp_path):
    instance = make_instance(name=LEGACY_NAME, hosts=LEGACY_HOSTS)
    text = render_inventory(instance, Settings(ansible_connection="local"))
    # The free-text name stays inside its comment line.
    assert text.splitlines()[0].startswith("# Inventory of lambda instance")
    assert "\\x0a[evil:vars]\\x0aansible_connection=local {{ 7*7 }}\\u2028x" in text
    assert len(text.splitlines()) == len(text.split("\n")) - 1

    listed = ansible_inventory(tmp_path, text)
    aliases = names.host_aliases(h.name for h in LEGACY_HOSTS)
    assert aliases == ("m-ansible-connection-ssh",
                       "s-ansible-host-10.6.6.6-lambda-host-role-master",
                       "lookup-pipe-touch-tmp-pwned", "q-evil", "ansible-python-interpreter",
                       "host-master")
    assert listed["master"]["hosts"] == [aliases[0]]
    assert listed["slaves"]["hosts"] == list(aliases[1:])
    assert sorted(listed) == ["_meta", "all", "lambda", "master", "slaves"]
    instance_vars = set(group_vars(parse(text)))
    assert instance_vars == {
        "lambda_instance_id", "lambda_services", "ansible_connection", "ansible_user",
        "ansible_port", "ansible_python_interpreter", "mitogen_ssh_keepalive_interval",
        "mitogen_ssh_keepalive_count", "mitogen_ssh_compression"}
    for host, alias in zip(LEGACY_HOSTS, aliases, strict=True):
        variables = listed["_meta"]["hostvars"][alias]
        # ansible_local: ansible-inventory's own (empty) local facts.
        assert set(variables) - instance_vars - {"ansible_local"} == {
            "ansible_host", "lambda_server_id", "lambda_host_ip", "lambda_host_role",
            "lambda_node_id"}
        assert variables["ansible_host"] == variables["lambda_host_ip"] == host.ip
        assert str(variables["lambda_server_id"]) == host.server_id
        assert variables["lambda_host_role"] == host.role.value
        assert variables["ansible_connection"] == "local"
    # Nothing Ansible would evaluate as a template.
    assert not re.search(r"\{\{|\{%|\{#", json.dumps(listed))


@pytest.mark.parametrize(("hosts", "services", "message"), [
    ((Host("1", "m", HostRole.MASTER, "{{ 7*7 }}"),), ("hdfs",), "host m ip '{{ 7"),
    ((Host("1", "m", HostRole.MASTER, "10.0.0.1\nansible_connection=local"),), ("hdfs",),
     "host m ip "),
    ((Host("1 x=1", "m", HostRole.MASTER, "10.0.0.1"),), ("hdfs",), "host m server_id "),
    ((Host("{{x}}", "m", HostRole.MASTER, "10.0.0.1"),), ("hdfs",), "host m server_id "),
    ((Host("1", "m", HostRole.MASTER, "10.0.0.1"),), ("hdfs", "{{ 7*7 }}"), "services "),
])
def test_legacy_values_that_cannot_be_written_safely_are_refused(hosts, services, message):
    with pytest.raises(InventoryError, match=f"cannot write {re.escape(message)}"):
        render_inventory(make_instance(hosts=hosts, services=services), Settings())


def test_a_legacy_instance_id_that_is_not_an_identifier_is_refused():
    with pytest.raises(InventoryError, match="instance id"):
        render_inventory(make_instance(id="x\nansible_connection=local"), Settings())


@pytest.mark.parametrize("setting", [dict(ssh_user="root ansible_become=true"),
                                     dict(ssh_user="{{ 7*7 }}"),
                                     dict(ssh_key_file="/k\nansible_connection=local")])
def test_unsafe_settings_are_refused(setting):
    with pytest.raises(InventoryError, match="is empty or unsafe"):
        render_inventory(make_instance(), Settings(**setting))
