"""Renders the Ansible inventory of one lambda instance from ``inventory_templates/``.

Groups ``master`` and ``slaves`` (children of ``lambda``), one line per host with its
address and identity, and the instance's variables in ``[lambda:vars]``. Host names are the
hosts' names made safe for an INI inventory.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from api.domain.model import SERVICES, HostRole, Instance
from api.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_VALUE_UNSAFE = re.compile(r"[\s#;=\"'\\]")


class InventoryError(ValueError):
    """The instance cannot be written as an inventory (no master, unsafe values)."""


@dataclass(frozen=True)
class _Row:
    inventory_name: str
    ip: str
    server_id: str


def host_alias(name: str) -> str:
    """A host's name as an inventory alias: letters, digits, ``_ . -`` only."""
    alias = _UNSAFE.sub("-", name.strip()).strip("-.")
    return alias or "host"


def _value(name: str, value: str) -> str:
    # Values go unquoted into key=value pairs: refuse what would break the line.
    if not value or _VALUE_UNSAFE.search(value):
        raise InventoryError(f"inventory value {name}={value!r} is empty or unsafe")
    return value


def render_inventory(
    instance: Instance, settings: Settings, *, python_interpreter: str | None = None
) -> str:
    """The INI inventory text for ``instance`` under ``settings`` (connection, user, key)."""
    if instance.master is None:
        raise InventoryError(f"instance {instance.id} has no master host")
    connection = settings.ansible_connection
    if python_interpreter is None:
        # Local hosts run modules with this very interpreter; VMs with the system Python 3.
        python_interpreter = sys.executable if connection == "local" else "/usr/bin/python3"
    rows: dict[HostRole, list[_Row]] = {HostRole.MASTER: [], HostRole.SLAVE: []}
    seen: dict[str, int] = {}
    for host in instance.hosts:
        alias = host_alias(host.name)
        seen[alias] = seen.get(alias, 0) + 1
        if seen[alias] > 1:  # two hosts whose names sanitise alike keep distinct aliases
            alias = f"{alias}-{seen[alias]}"
        rows[host.role].append(
            _Row(alias, _value("ip", host.ip), _value("server_id", str(host.server_id)))
        )
    # Services in start order, whatever order the instance lists them in.
    services = [s for s in SERVICES if s in instance.services]
    services += [s for s in instance.services if s not in SERVICES]
    template_path = Path(settings.inventory_template)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_path.parent)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(template_path.name).render(
        instance=instance,
        masters=rows[HostRole.MASTER],
        slaves=rows[HostRole.SLAVE],
        services=services,
        connection=connection,
        user=_value("ssh_user", settings.ssh_user),
        port=int(settings.ssh_port),
        key_file=_value("ssh_key_file", settings.ssh_key_file) if settings.ssh_key_file else None,
        python_interpreter=_value("python_interpreter", python_interpreter),
    )
