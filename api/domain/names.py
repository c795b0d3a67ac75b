"""What the names and values of a lambda instance may be, and its hosts' inventory aliases.

Every value that reaches an inventory, extra vars, a configuration file or a command line is
checked here where it enters (seed files, repository writes, the API) and escaped again where
it is rendered, so a row written before these rules existed still cannot inject anything.

- Instance name: free display text (1 to 255 printable characters; no control, format or
  line-separator characters). It is only ever rendered escaped (``one_line``).
- Host name: a DNS host name (letters, digits and hyphens, dot-separated labels of at most
  63 characters, 253 in all), unique in its instance and not a group name of the inventory.
  A valid host name is its own inventory alias, so Ansible's output, ``--limit`` and every
  message name a host exactly as the database does.
- IP: an IPv4 address (``ipaddress``). IPv6 is refused: the roles write ``ip:port`` into
  the daemons' configuration, which an IPv6 address would need brackets for.
- Server id and instance id: 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a
  letter or digit (a Cyclades number, an OpenStack UUID); unique in the instance.
- Services: the known ones (``SERVICES``), each once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from api.domain.model import SERVICES, Host, Instance

MAX_INSTANCE_NAME = 255
MAX_HOST_NAME = 253
MAX_IDENTIFIER = 64

# The inventory's own groups, and those lambda-start.yml adds (group_by ``lambda_<service>``):
# a host of that name would make ``--limit`` select a whole group.
INVENTORY_GROUPS = frozenset(
    {"all", "ungrouped", "master", "slaves", "lambda"} | {f"lambda_{s}" for s in SERVICES})

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IDENTIFIER = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_IDENTIFIER - 1}}}")
_NOT_ALIAS = re.compile(r"[^A-Za-z0-9.-]+")


class InvalidValue(ValueError):
    """A value that may not enter the system; ``field`` names where it was found."""

    def __init__(self, field: str, value: object, reason: str):
        shown = repr(one_line(value)) if isinstance(value, str) else one_line(repr(value))
        super().__init__(f"{field} {shown}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


def instance_name(value: object, field: str = "name") -> str:
    text = _string(value, field)
    if not text.strip():
        raise InvalidValue(field, text, "must not be blank")
    if len(text) > MAX_INSTANCE_NAME:
        raise InvalidValue(field, text, f"is longer than {MAX_INSTANCE_NAME} characters")
    if not all(c.isprintable() for c in text):
        raise InvalidValue(field, text, "holds control, format or line-separator characters")
    return text


def host_name(value: object, field: str = "host name") -> str:
    text = _string(value, field)
    if len(text) > MAX_HOST_NAME or not all(_HOST_LABEL.fullmatch(p) for p in text.split(".")):
        raise InvalidValue(field, text, "is not a host name (letters, digits and hyphens in "
                           "dot-separated labels of at most 63 characters, 253 in all)")
    if text in INVENTORY_GROUPS:
        raise InvalidValue(field, text, "is the name of an inventory group")
    return text


def ip_address(value: object, field: str = "ip") -> str:
    """The canonical text of an IPv4 address."""
    text = _string(value, field)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(field, text, "is not an IPv4 address") from None
    if address.version != 4:
        raise InvalidValue(field, text, "is an IPv6 address: the roles write ip:port into "
                           "the daemons' configuration, for IPv4 only")
    return str(address)


def identifier(value: object, field: str = "id") -> str:
    """A server id or instance id: it goes into URLs, inventories and file names."""
    text = _string(value, field)
    if not _IDENTIFIER.fullmatch(text):
        raise InvalidValue(field, text, f"must be 1 to {MAX_IDENTIFIER} letters, digits, "
                           "'.', '_' or '-', starting with a letter or digit")
    return text


def services(values: Iterable[object], field: str = "services") -> tuple[str, ...]:
    if isinstance(values, (str, bytes)):
        raise InvalidValue(field, values, "must be a list of service names")
    result: list[str] = []
    for value in values:
        if value not in SERVICES:
            raise InvalidValue(field, value, f"is not a known service ({', '.join(SERVICES)})")
        if value in result:
            raise InvalidValue(field, value, "is listed twice")
        result.append(value)
    return tuple(result)


def validate_host(host: Host, field: str = "host") -> Host:
    """The host with its values checked and the IP in canonical form."""
    return Host(server_id=identifier(host.server_id, f"{field}.server_id"),
                name=host_name(host.name, f"{field}.name"), role=host.role,
                ip=ip_address(host.ip, f"{field}.ip"))


def validate_instance(instance: Instance) -> Instance:
    """The instance with every name and value checked (a copy, IPs in canonical form);
    ``InvalidValue`` names the first offending field."""
    hosts = tuple(validate_host(h, f"hosts[{i}]") for i, h in enumerate(instance.hosts))
    for attribute in ("server_id", "name"):
        seen: set[str] = set()
        for i, host in enumerate(hosts):
            value = getattr(host, attribute)
            if value in seen:
                raise InvalidValue(f"hosts[{i}].{attribute}", value, "is used by another host")
            seen.add(value)
    return Instance(
        id=identifier(instance.id, "id"), owner=instance.owner,
        name=instance_name(instance.name), status=instance.status,
        services=services(instance.services), hosts=hosts,
        failure_message=instance.failure_message, created_at=instance.created_at,
        updated_at=instance.updated_at, left_out_hosts=instance.left_out_hosts)


def host_aliases(host_names: Iterable[str]) -> tuple[str, ...]:
    """Each host's inventory alias, in the order of ``host_names`` (an instance's hosts'
    names): the one name the inventory, ``--limit`` and messages use for a host.

    A valid, unique host name is its own alias. Any other name (a row written before
    validation) becomes letters, digits, ``.`` and ``-`` only, never a group name, and is
    made unique with ``-2``, ``-3``...: the same hosts always get the same aliases.
    """
    names = list(host_names)
    aliases: list[str | None] = [None] * len(names)
    taken: set[str] = set()
    for i, name in enumerate(names):  # valid names keep themselves, the first one wins
        if _is_host_name(name) and name not in taken:
            aliases[i] = name
            taken.add(name)
    for i, name in enumerate(names):
        if aliases[i] is None:
            base = _NOT_ALIAS.sub("-", str(name)).strip("-.")[:MAX_HOST_NAME - 8] or "host"
            if base in INVENTORY_GROUPS:
                base = f"host-{base}"
            alias, n = base, 2
            while alias in taken:
                alias, n = f"{base}-{n}", n + 1
            aliases[i] = alias
            taken.add(alias)
    return tuple(a for a in aliases if a is not None)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (newlines, controls, line and
    paragraph separators, format characters) and the backslash written as an escape, so it
    stays on one line wherever it is rendered."""
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def _is_host_name(value: object) -> bool:
    try:
        host_name(value)
    except InvalidValue:
        return False
    return True


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(field, value, "must be a string")
    return value
