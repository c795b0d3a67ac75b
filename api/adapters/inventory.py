"""Renders the Ansible inventory of one lambda instance from ``inventory_templates/``.

Groups ``master`` and ``slaves`` (children of ``lambda``), one line per host with its
address and identity, and the instance's variables in ``[lambda:vars]``.

The hosts the instance lists in ``left_out_hosts`` are not written (a start that leaves
out a broken slave renders the instance so), so no service's configuration names them.
Each host keeps its number in the whole instance (``lambda_node_id``: the master 1, the
slaves 2, 3, ... in order) whoever is left out: a Kafka broker's id is stored in its data
and must not change from one start to the next.

Ansible evaluates an INI inventory's values as templates and splits its lines on ``=`` and
whitespace, and no INI value can be marked unsafe; so only values that hold none of that are
written: host aliases (``host_aliases``), canonical IPs, checked server and instance ids and
known services (``api.domain.names``). A row stored before those checks that fails one is
refused with an ``InventoryError``, never written. The instance's free-text name appears
only in a comment, escaped onto one line.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from api.adapters.ssh import host_key_args
from api.domain import names
from api.domain.model import SERVICES, HostRole, Instance
from api.settings import Settings

# Settings go unquoted into key=value pairs: nothing that would split the line, start a
# comment, quote, escape or open a template.
_VALUE_UNSAFE = re.compile(r"[\s#;=\"'\\{}]")


class InventoryError(ValueError):
    """The instance cannot be written as an inventory (no master, unsafe values)."""


@dataclass(frozen=True)
class _Row:
    inventory_name: str
    ip: str
    server_id: str
    node_id: int


def _value(name: str, value: str) -> str:
    if not value or _VALUE_UNSAFE.search(value):
        raise InventoryError(f"inventory value {name}={value!r} is empty or unsafe")
    return value


def _checked(check, value, field: str) -> str:
    try:
        return check(value, field)
    except names.InvalidValue as exc:
        raise InventoryError(f"cannot write {exc} into an inventory") from exc


def render_inventory(
    instance: Instance, settings: Settings, *, python_interpreter: str | None = None,
    known_hosts_file: str | None = None,
) -> str:
    """The INI inventory text for ``instance`` under ``settings`` (connection, user, key).

    With ``known_hosts_file`` (the instance's pinned host keys, for operators' own runs)
    the hosts are checked against exactly that file; the service's runner passes its own.
    """
    if instance.master is None:
        raise InventoryError(f"instance {instance.id} has no master host")
    instance_id = _checked(names.identifier, instance.id, "instance id")
    connection = settings.ansible_connection
    if python_interpreter is None:
        # Local hosts run modules with this very interpreter; VMs with the system Python 3.
        python_interpreter = sys.executable if connection == "local" else "/usr/bin/python3"
    rows: dict[HostRole, list[_Row]] = {HostRole.MASTER: [], HostRole.SLAVE: []}
    left_out: list[str] = []
    aliases = names.host_aliases(h.name for h in instance.hosts)
    slaves = 0
    for host, alias in zip(instance.hosts, aliases, strict=True):
        if host.role is HostRole.SLAVE:
            slaves += 1
        if host.name in instance.left_out_hosts:
            left_out.append(alias)
            continue
        rows[host.role].append(_Row(
            alias,
            _checked(names.ip_address, host.ip, f"host {alias} ip"),
            _checked(names.identifier, host.server_id, f"host {alias} server_id"),
            1 if host.role is HostRole.MASTER else slaves + 1,
        ))
    if not rows[HostRole.MASTER]:
        raise InventoryError(f"instance {instance.id} leaves its master out")
    # Services in start order, whatever order the instance lists them in.
    listed = set(_checked(names.services, instance.services, "services"))
    services = [s for s in SERVICES if s in listed]
    template_path = Path(settings.inventory_template)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_path.parent)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(template_path.name).render(
        instance_id=instance_id,
        instance_name=names.one_line(instance.name),
        masters=rows[HostRole.MASTER],
        slaves=rows[HostRole.SLAVE],
        left_out=left_out,
        services=services,
        connection=_value("ansible_connection", connection),
        user=_value("ssh_user", settings.ssh_user),
        port=int(settings.ssh_port),
        key_file=_value("ssh_key_file", settings.ssh_key_file) if settings.ssh_key_file else None,
        python_interpreter=_value("python_interpreter", python_interpreter),
        host_key_ssh_args=host_key_args(Path(known_hosts_file)) if known_hosts_file else None,
    )
