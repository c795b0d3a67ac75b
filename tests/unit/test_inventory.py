"""render_inventory: the INI text Ansible reads for one instance."""

from __future__ import annotations

import configparser
import json
import sys

import pytest

from api.adapters.inventory import InventoryError, host_alias, render_inventory
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
        }
    }
    slaves = host_vars(parser, "slaves")
    # Names are sanitised into inventory aliases; order is kept.
    assert list(slaves) == ["lambda-1-slave-1", "lambda-1-slave-2"]
    assert slaves["lambda-1-slave-1"]["lambda_host_role"] == "slave"
    assert slaves["lambda-1-slave-2"]["ansible_host"] == "127.42.1.3"


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


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("lambda-1-master", "lambda-1-master"),
        (" a b ", "a-b"),
        ("x;rm -rf", "x-rm--rf"),
        ("##", "host"),
    ],
)
def test_host_alias(name, alias):
    assert host_alias(name) == alias


def test_instance_without_master_is_refused():
    hosts = (Host("2", "s", HostRole.SLAVE, "10.0.0.2"),)
    with pytest.raises(InventoryError, match="no master"):
        render_inventory(make_instance(hosts=hosts), Settings())


def test_values_that_would_break_a_line_are_refused():
    hosts = (Host("1", "m", HostRole.MASTER, "10.0.0.1 evil=1"),)
    with pytest.raises(InventoryError, match="unsafe"):
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
