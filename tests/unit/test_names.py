"""api.domain.names: what an instance's names and values may be, where each is refused
(seed file, repository writes), and the hosts' inventory aliases."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import insert

from api.adapters.db import tables
from api.adapters.db.engine import create_db_engine, migrate
from api.cli import main
from api.domain import names
from api.domain.clock import utcnow
from api.domain.model import Host, HostRole, Instance, InstanceStatus
from api.seed import SeedError, instances_from_seed
from tests.fakes import InMemoryUnitOfWorkFactory

INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"
HOSTILE = [
    "a\nb",
    "x ansible_connection=local",
    "{{ lookup('pipe', 'id') }}",
    "{% raw %}",
    'q"uote',
    "q'uote",
    "ansible_host",
    "a=b",
    "tab\there",
    "line\u2028separator",
]


def make_instance(**changes) -> Instance:
    values = dict(
        id=INSTANCE_ID, owner="u", name="demo", status=InstanceStatus.STOPPED,
        services=("hdfs", "kafka"),
        hosts=(Host("101", "lambda-master", HostRole.MASTER, "10.0.0.1"),
               Host("102", "lambda-slave-1", HostRole.SLAVE, "10.0.0.2")))
    values.update(changes)
    return Instance(**values)


def with_host(**changes) -> Instance:
    master = Host("101", "lambda-master", HostRole.MASTER, "10.0.0.1")
    values = dict(server_id="102", name="lambda-slave-1", role=HostRole.SLAVE, ip="10.0.0.2")
    values.update(changes)
    return make_instance(hosts=(master, Host(**values)))


# --- each value -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "συστάδα-ü", "My cluster (2) = big {ok}", "x" * 255])
def test_instance_names_are_free_text(name):
    assert names.instance_name(name) == name


@pytest.mark.parametrize("name", ["", "   ", "x" * 256, "a\nb", "a\rb", "a\x00b", "a\x1bb",
                                  "a\u2028b", "a\u0085b", "right\u202eleft", 42, None])
def test_instance_names_without_text_or_with_control_characters_are_refused(name):
    with pytest.raises(names.InvalidValue, match=r"^name "):
        names.instance_name(name)


@pytest.mark.parametrize("name", ["m", "lambda-1-master", "node1.example.org", "10-0-0-1",
                                  "A" * 63, ".".join(["a" * 63] * 3) + "." + "b" * 61])
def test_host_names_are_dns_host_names(name):
    assert names.host_name(name) == name


@pytest.mark.parametrize("name", [
    *HOSTILE, "", "-x", "x-", "a..b", ".a", "a_b", "a b", "a:22", "a[1:3]", "a,b", "*", "~a", "!a",
    "@file", "a" * 64, ".".join(["a" * 63] * 4), "ü", 7, None])
def test_other_host_names_are_refused(name):
    with pytest.raises(names.InvalidValue,
                       match=r"^host name .*(is not a host name|must be a string)"):
        names.host_name(name)


@pytest.mark.parametrize("name", ["all", "ungrouped", "master", "slaves", "lambda"])
def test_group_names_are_not_host_names(name):
    with pytest.raises(names.InvalidValue, match="name of an inventory group"):
        names.host_name(name)


@pytest.mark.parametrize(("ip", "canonical"), [
    ("10.0.0.1", "10.0.0.1"), ("127.42.1.2", "127.42.1.2"), ("192.0.2.255", "192.0.2.255")])
def test_ips_are_kept_in_canonical_form(ip, canonical):
    assert names.ip_address(ip) == canonical


@pytest.mark.parametrize("ip", [*HOSTILE, "", "10.0.0", "10.0.0.256", "010.0.0.1",
                                "10.0.0.1 evil=1", "10.0.0.1\n", "host.example",
                                "fe80::1%eth0\n", "2001:db8::1", "::1", 167772161, None])
def test_other_ips_are_refused(ip):
    with pytest.raises(names.InvalidValue, match=r"^ip "):
        names.ip_address(ip)


@pytest.mark.parametrize("value", ["101", "a1b2", "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c",
                                   "i-1.m_2", "9" * 64])
def test_server_ids(value):
    assert names.identifier(value, "server_id") == value


@pytest.mark.parametrize("value", [
    *(v for v in HOSTILE if v != "ansible_host"),  # a harmless id, written quoted
    "", "-1", ".1", "1/2", "1?x", "1#", "9" * 65, "1 2", 101, None])
def test_other_server_ids_are_refused(value):
    with pytest.raises(names.InvalidValue, match=r"^server_id "):
        names.identifier(value, "server_id")


def test_services_are_the_known_ones_each_once():
    assert names.services(["spark", "hdfs"]) == ("spark", "hdfs")
    assert names.services([]) == ()
    with pytest.raises(names.InvalidValue, match="'flink': is not a known service"):
        names.services(["hdfs", "flink"])
    with pytest.raises(names.InvalidValue, match="is not a known service"):
        names.services(["hdfs", "{{ 7*7 }}"])
    with pytest.raises(names.InvalidValue, match="'hdfs': is listed twice"):
        names.services(["hdfs", "hdfs"])
    with pytest.raises(names.InvalidValue, match="must be a list"):
        names.services("hdfs")


def test_an_invalid_value_is_named_on_one_line():
    with pytest.raises(names.InvalidValue) as caught:
        names.host_name("a\nansible_connection=local", "hosts[1].name")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("hosts[1].name 'a\\\\x0aansible_connection=local'")
    assert caught.value.field == "hosts[1].name"


# --- a whole instance -------------------------------------------------------------------


def test_a_valid_instance_comes_back_with_canonical_ips():
    instance = with_host(ip="10.0.0.2")
    assert names.validate_instance(instance) == instance


@pytest.mark.parametrize(("instance", "field"), [
    (make_instance(name="a\nb"), "name"),
    (make_instance(id="../x"), "id"),
    (make_instance(services=("hdfs", "flink")), "services"),
    (with_host(name="x ansible_connection=local"), r"hosts\[1\].name"),
    (with_host(ip="{{ 7*7 }}"), r"hosts\[1\].ip"),
    (with_host(server_id="1 2"), r"hosts\[1\].server_id"),
    (with_host(name="lambda-master"), r"hosts\[1\].name"),
    (with_host(server_id="101"), r"hosts\[1\].server_id"),
])
def test_an_instance_is_refused_naming_the_field(instance, field):
    with pytest.raises(names.InvalidValue, match=f"^{field} "):
        names.validate_instance(instance)


# --- where values enter -----------------------------------------------------------------


def seed_item(**changes) -> dict:
    item = {"id": INSTANCE_ID, "owner": "u", "name": "demo", "services": ["hdfs"],
            "hosts": [{"server_id": 101, "name": "lambda-master", "role": "master",
                       "ip": "10.0.0.1"},
                      {"server_id": "102", "name": "lambda-slave-1", "role": "slave",
                       "ip": "10.0.0.2"}]}
    item.update(changes)
    return item


def hostile_host(**changes) -> list[dict]:
    host = {"server_id": "102", "name": "lambda-slave-1", "role": "slave", "ip": "10.0.0.2"}
    host.update(changes)
    return [seed_item()["hosts"][0], host]


def test_the_seed_loader_takes_valid_instances():
    (instance,) = instances_from_seed({"instances": [seed_item()]})
    assert [h.server_id for h in instance.hosts] == ["101", "102"]  # a YAML number is text
    assert instance.name == "demo"


@pytest.mark.parametrize(("item", "message"), [
    (seed_item(name="demo\n[evil]"), r"instance 0: name 'demo\\\\x0a\[evil\]': holds control"),
    (seed_item(services=["hdfs", "{{ 7*7 }}"]), "instance 0: services '{{ 7\\*7 }}': is not"),
    (seed_item(hosts=hostile_host(name="s ansible_host=1.2.3.4")),
     r"instance 0: hosts\[1\].name 's ansible_host=1.2.3.4': is not a host name"),
    (seed_item(hosts=hostile_host(ip="10.0.0.2\nansible_connection=local")),
     r"instance 0: hosts\[1\].ip .*: is not an IPv4 address"),
    (seed_item(hosts=hostile_host(server_id="../../servers")),
     r"instance 0: hosts\[1\].server_id '../../servers': must be"),
    (seed_item(hosts=hostile_host(name=None)), r"instance 0: hosts\[1\].name None: must be a"),
    (seed_item(id="not-a-uuid"), "instance 0: id 'not-a-uuid' is not a UUID"),
])
def test_the_seed_loader_refuses_naming_instance_and_field(item, message):
    with pytest.raises(SeedError, match=message):
        instances_from_seed({"instances": [item]})


def test_repository_writes_refuse_invalid_values(uow_factory):
    check_repository_writes(uow_factory)


def test_the_in_memory_repository_refuses_them_too():
    check_repository_writes(InMemoryUnitOfWorkFactory())


def check_repository_writes(factory):
    with factory() as uow:
        with pytest.raises(names.InvalidValue, match=r"^hosts\[1\].name "):
            uow.instances.add(with_host(name="s\nansible_connection=local"))
        with pytest.raises(names.InvalidValue, match=r"^name "):
            uow.instances.add(make_instance(name="x\ny"))
        with pytest.raises(names.InvalidValue, match=r"^hosts\[1\].ip .*IPv6"):
            uow.instances.add(with_host(ip="2001:db8::2"))
        uow.instances.add(with_host(ip="10.0.0.2"))
        uow.commit()
    with factory(readonly=True) as uow:
        assert uow.instances.get(INSTANCE_ID).hosts[1].ip == "10.0.0.2"


# --- aliases and one-line text ----------------------------------------------------------


def test_valid_host_names_are_their_own_aliases():
    assert names.host_aliases(["m", "lambda-slave-1", "a.b.c"]) == ("m", "lambda-slave-1",
                                                                     "a.b.c")


def test_other_names_become_safe_unique_aliases_deterministically():
    legacy = ["node 1", "node/1", "node-1-2", "master", "x\nansible_connection=local",
              "{{ 7*7 }}", "", "node-1", 'q"=\'', "lambda_hdfs"]
    aliases = names.host_aliases(legacy)
    assert aliases == ("node-1-3", "node-1-4", "node-1-2", "host-master",
                       "x-ansible-connection-local", "7-7", "host", "node-1", "q",
                       "lambda-hdfs")
    assert names.host_aliases(legacy) == aliases
    assert len(set(aliases)) == len(aliases)
    assert not set(aliases) & names.INVENTORY_GROUPS


def test_one_line_escapes_what_could_end_a_line():
    text = "a\nb\rc\u2028d\u2029e\x85f\x0bg\\h ü {{ x }}"
    escaped = names.one_line(text)
    assert escaped == "a\\x0ab\\x0dc\\u2028d\\u2029e\\x85f\\x0bg\\\\h ü {{ x }}"
    assert len(escaped.splitlines()) == 1


# --- the operator's commands --------------------------------------------------------------


@pytest.fixture
def database(in_empty_dir, monkeypatch):
    """A database named by LAMBDA_DATABASE_URL, in an empty working directory."""
    url = f"sqlite:///{in_empty_dir / 'lambda.db'}"
    monkeypatch.setenv("LAMBDA_DATABASE_URL", url)
    return url


def test_seed_command_refuses_a_hostile_seed_in_one_line(database, tmp_path, capsys):
    seed = tmp_path / "seed.yml"
    seed.write_text(yaml.safe_dump({"instances": [
        seed_item(hosts=hostile_host(name="s\nansible_connection=local"))]}))
    assert main(["seed", str(seed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "instance 0: hosts[1].name 's\\\\x0aansible_connection=local'" in err


def test_inventory_command_refuses_a_legacy_row_it_cannot_write_safely(database, capsys):
    engine = create_db_engine(database)
    migrate(engine)
    with engine.begin() as conn:  # written as an old version would have, unchecked
        conn.execute(insert(tables.instances).values(
            id=INSTANCE_ID, owner="u", name="x", status="STOPPED", services=["hdfs"],
            created_at=utcnow(), updated_at=utcnow()))
        conn.execute(insert(tables.hosts).values(
            instance_id=INSTANCE_ID, server_id="1", position=0, name="m", role="master",
            ip="10.0.0.1\nansible_connection=local"))
    engine.dispose()
    assert main(["inventory", INSTANCE_ID]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"lambda instance {INSTANCE_ID}: cannot write host m ip " in err
