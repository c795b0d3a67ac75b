"""Settings from environment variables (``LAMBDA_*``) and an optional YAML file.

Precedence: environment > YAML file (``LAMBDA_CONFIG``) > ``~/.kamakirc`` (auth URL only)
> defaults. Every setting is documented in the README.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import dataclasses
import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

import yaml

from api.domain.chains import CHAIN_MODES


def _ansible_files_root() -> Path:
    """Where ``playbooks/``, ``roles/``, ``inventory_templates/`` and ``ansible.cfg`` are:
    their copy inside an installed package (``setup.py`` ships them), else the checkout's
    top, where they live."""
    package = Path(__file__).resolve().parent
    shipped = package / "ansible_files"
    return shipped if (shipped / "playbooks").is_dir() else package.parent


FILES_ROOT = _ansible_files_root()


# mitogen_linear: the strategy plugin ansible.cfg names; linear: Ansible's own; auto:
# Mitogen over SSH, linear over a local connection. Mitogen gives every local "host" of one
# machine the same interpreter, which then runs their tasks one after another.
ANSIBLE_STRATEGIES = ("auto", "mitogen_linear", "linear")
# pinned: each VM's SSH host key is pinned on first sight and checked on every run after;
# off: no check at all (the lab and the demo, whose hosts are throwaway).
SSH_HOST_KEY_CHECKING = ("pinned", "off")
CHECKS = ("enforce", "report", "off")
LOG_FORMATS = ("text", "json")
_BIND = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):([1-9][0-9]{0,4})$")


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


# Settings that hold credentials: never handed to a playbook, whatever LAMBDA_ANSIBLE_ENV says.
SECRET_VARIABLES = ("LAMBDA_SECRET_KEY", "LAMBDA_DATABASE_URL", "LAMBDA_BROKER_URL",
                    "LAMBDA_CONFIG")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _comma_separated(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def _check_fernet_key(key: str) -> bool:
    """A Fernet key: 32 bytes in URL-safe base64 (what ``Fernet.generate_key`` gives)."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'lambda.db'}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_database_url)
    dispatcher: str = "local"  # local | celery
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    queue: str = "lambda-actions"  # the Celery queue of action ids
    broker_confirm: bool = False  # RabbitMQ publisher confirms on every dispatch
    sweep_interval: float = 0.0  # seconds between orphan sweeps; 0: a third of the lease
    auth_url: str | None = None
    bind: str = "127.0.0.1:8000"
    http_workers: int = 2  # API server processes
    # Threads per API process for the domain's blocking calls (the database). A request
    # here is mostly CPU work (SQLite, a cached token), so a second thread only contends
    # for the GIL. Raise it when the database is remote, so its round trips overlap.
    http_threads: int = 1
    http_identity_threads: int = 2  # per API process, for tokens not in the cache
    # Checks of uncached tokens that may wait for those threads; past them, 503 at once.
    http_identity_waiting: int = 16
    # Seconds from a connection's start (or its previous response) to a request's
    # complete headers: a client that trickles them, or idles, is cut off then.
    http_header_timeout: float = 10.0
    http_body_timeout: float = 10.0  # seconds a request body may take to arrive, in all
    events_poll_interval: float = 0.5  # seconds between an event stream's database reads
    events_keepalive: float = 15.0  # seconds of a quiet event stream before a keep-alive
    event_streams: int = 100  # event streams open at once per API process; beyond: 503
    state_dir: str = field(default_factory=lambda: str(Path.cwd() / ".lambda"))
    # Fernet keys, comma separated: the first encrypts, every one decrypts (rotation).
    # Else one generated under state_dir, which only a single machine can share.
    secret_key: str | None = field(default=None, repr=False)
    pool_size: int = 4  # concurrent actions per process (local dispatcher)
    lease_seconds: float = 30.0  # how long a worker's claim on an action lasts unrenewed
    max_attempts: int = 3  # runs of one action before it is failed for good
    # Seconds between a worker's reads of a running action's row for a cancel request.
    cancel_poll_interval: float = 1.0
    identity_cache_ttl: float = 60.0
    identity_cache_size: int = 10_000  # valid tokens cached per process
    identity_negative_ttl: float = 5.0  # how long an invalid token is remembered
    identity_negative_cache_size: int = 10_000  # invalid tokens remembered per process
    identity_max_concurrent: int = 8  # token checks in flight to the identity service
    identity_slot_wait: float = 0.5  # seconds a check waits for a free slot, then 503
    identity_outage_failures: int = 3  # failed checks in a row that mean "down"; 0: off
    identity_outage_seconds: float = 5.0  # unknown tokens get 503 at once, then one probe
    http_timeout: float = 10.0  # one request to the cloud
    http_retries: int = 3  # retries on connection errors and 5xx
    power_timeout: float = 600.0  # VMs reaching ACTIVE/STOPPED
    ssh_timeout: float = 300.0  # every host answering SSH
    playbook_timeout: float = 1800.0
    # Service checks after every start's playbook (lambda-check.yml): enforce (a failed
    # check fails the start) | report (recorded, the start succeeds) | off.
    checks: str = "enforce"
    poll_interval: float = 1.0  # compute status polling
    playbook_dir: str = str(FILES_ROOT / "playbooks")
    roles_dir: str = str(FILES_ROOT / "roles")
    inventory_template: str = str(FILES_ROOT / "inventory_templates" / "lambda-instance.ini.j2")
    ansible_connection: str = "ssh"  # ssh | local (the demo's local hosts)
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key_file: str | None = None
    ansible_forks: int = 20
    ansible_strategy: str = "auto"  # auto | mitogen_linear | linear
    # side-by-side: a start's (a stop's) dependency chains run as playbooks of their own at
    # once; one-after-another: the whole playbook, as an operator runs it (api.domain.chains)
    playbook_chains: str = "side-by-side"
    ssh_kex: str = "auto"  # auto | default | an OpenSSH KexAlgorithms value
    ssh_host_key_checking: str = "pinned"  # pinned | off
    extravars_file: str | None = None  # YAML of extra variables for every playbook run
    # Names of further variables of the service's environment that playbooks get (the
    # rest is withheld from them: see ``api.adapters.ansible``), comma separated.
    ansible_env: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (one object per line)
    # Who may read the API's /metrics: CIDRs, comma separated; empty: nobody.
    metrics_allow: str | None = "127.0.0.1/32,::1/128"
    # Where a Celery worker serves its metrics (HOST:PORT); empty: it serves none.
    worker_metrics_bind: str | None = "127.0.0.1:9465"

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def artifacts_dir(self) -> Path:
        return Path(self.state_dir) / "runs"

    @property
    def secret_keys(self) -> list[str]:
        """``LAMBDA_SECRET_KEY`` as its keys, the encrypting one first; empty if unset."""
        return _comma_separated(self.secret_key)

    @property
    def scaled_out(self) -> bool:
        """More than one machine may share the work: Celery workers, or a database that
        is not a local SQLite file."""
        backend = self.database_url.split(":", 1)[0].split("+", 1)[0].lower()
        return self.dispatcher == "celery" or backend != "sqlite"

    @property
    def metrics_allow_networks(self) -> list[IPv4Network | IPv6Network]:
        """``metrics_allow`` parsed (``SettingsError`` on a malformed one)."""
        networks = []
        for item in _comma_separated(self.metrics_allow):
            try:
                networks.append(ip_network(item, strict=False))
            except ValueError as exc:
                raise SettingsError(f"LAMBDA_METRICS_ALLOW: {item!r} is not an address or "
                                    "a network (CIDR)") from exc
        return networks

    @property
    def ansible_env_names(self) -> list[str]:
        return _comma_separated(self.ansible_env)

    @property
    def ansible_cfg(self) -> Path:
        """The ``ansible.cfg`` beside the playbooks (for a plain ``ansible-playbook``)."""
        return FILES_ROOT / "ansible.cfg"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw):
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except (TypeError, ValueError) as exc:
        expected = "true or false" if kind == "bool" else "a number"
        raise SettingsError(f"setting {name}: {raw!r} is not {expected}") from exc
    return None if raw in ("", None) else str(raw)


def kamakirc_auth_url(path: Path | None = None) -> str | None:
    """The auth URL of kamaki's default cloud, if ``~/.kamakirc`` names one."""
    path = path or Path(os.environ.get("KAMAKIRC", Path.home() / ".kamakirc"))
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error:
        return None
    cloud = parser.get("global", "default_cloud", fallback=None)
    sections = [f'cloud "{cloud}"'] if cloud else []
    sections += [s for s in parser.sections() if s.startswith("cloud ")]
    for section in sections:
        url = parser.get(section, "url", fallback=None)
        if url:
            return url.strip()
    return None


def load_settings(env: dict | None = None, config_file: str | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    values: dict = {}
    config_file = config_file or env.get("LAMBDA_CONFIG")
    if config_file:
        try:
            data = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"config file {config_file} must hold a mapping")
        for key, raw in data.items():
            if key not in _FIELDS:
                raise SettingsError(f"config file {config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
    for name in _FIELDS:
        raw = env.get(f"LAMBDA_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    if not values.get("auth_url"):
        values["auth_url"] = kamakirc_auth_url()
    settings = Settings(**values)
    if settings.dispatcher not in ("local", "celery"):
        raise SettingsError(
            f"LAMBDA_DISPATCHER must be local or celery, not {settings.dispatcher!r}")
    if settings.ansible_connection not in ("ssh", "local"):
        raise SettingsError("LAMBDA_ANSIBLE_CONNECTION must be ssh or local")
    if settings.ansible_strategy not in ANSIBLE_STRATEGIES:
        raise SettingsError(
            f"LAMBDA_ANSIBLE_STRATEGY must be one of {', '.join(ANSIBLE_STRATEGIES)}, "
            f"not {settings.ansible_strategy!r}")
    if settings.playbook_chains not in CHAIN_MODES:
        raise SettingsError(
            f"LAMBDA_PLAYBOOK_CHAINS must be one of {', '.join(CHAIN_MODES)}, "
            f"not {settings.playbook_chains!r}")
    if settings.ssh_host_key_checking not in SSH_HOST_KEY_CHECKING:
        raise SettingsError(
            f"LAMBDA_SSH_HOST_KEY_CHECKING must be one of {', '.join(SSH_HOST_KEY_CHECKING)}, "
            f"not {settings.ssh_host_key_checking!r}")
    if settings.checks not in CHECKS:
        raise SettingsError(
            f"LAMBDA_CHECKS must be one of {', '.join(CHECKS)}, not {settings.checks!r}")
    if settings.events_poll_interval <= 0 or settings.events_keepalive <= 0:
        raise SettingsError("LAMBDA_EVENTS_POLL_INTERVAL and LAMBDA_EVENTS_KEEPALIVE must be "
                            "more than 0 seconds")
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"LAMBDA_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                            f"not {settings.log_format!r}")
    _ = settings.metrics_allow_networks  # raises SettingsError if one is malformed
    if settings.worker_metrics_bind and not _BIND.match(settings.worker_metrics_bind):
        raise SettingsError("LAMBDA_WORKER_METRICS_BIND must be HOST:PORT (or empty: off), "
                            f"not {settings.worker_metrics_bind!r}")
    _check_secret_key(settings)
    _check_ansible_env(settings)
    return settings


def _check_secret_key(settings: Settings) -> None:
    if settings.secret_key is None:
        return
    keys = settings.secret_keys
    if not keys:
        raise SettingsError("LAMBDA_SECRET_KEY is set but holds no key")
    for number, key in enumerate(keys, 1):
        if not _check_fernet_key(key):
            # The value itself is never echoed: it is a secret, and errors reach logs.
            where = f"key {number} of {len(keys)}" if len(keys) > 1 else "its key"
            raise SettingsError(
                f"LAMBDA_SECRET_KEY: {where} is not a Fernet key (32 bytes in URL-safe "
                "base64, as `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'` prints)")


def _check_ansible_env(settings: Settings) -> None:
    for name in settings.ansible_env_names:
        if not _ENV_NAME.match(name):
            raise SettingsError(f"LAMBDA_ANSIBLE_ENV: {name!r} is not a variable name")
        if name in SECRET_VARIABLES:
            raise SettingsError(f"LAMBDA_ANSIBLE_ENV: {name} holds a credential and is "
                                "never handed to playbooks")


def require_shared_secret(settings: Settings) -> None:
    """Refuse to start a scaled-out process without ``LAMBDA_SECRET_KEY``.

    Each machine would otherwise generate a key of its own: an action accepted by one API
    process could not be decrypted by the worker that takes it, and every action would
    fail. Called by ``api.bootstrap`` (every API process and worker) and by the CLI
    before it starts anything."""
    if settings.scaled_out and not settings.secret_keys:
        why = ("LAMBDA_DISPATCHER is celery" if settings.dispatcher == "celery"
               else "the database is not a local SQLite file")
        raise SettingsError(
            f"LAMBDA_SECRET_KEY is required when {why}: every API process and worker must "
            "share one key (a key generated per machine cannot read the others' actions). "
            "Generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and give it to all of them")
