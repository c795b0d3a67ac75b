"""The ports are whole: every method the domain and the workers call on a repository is on
its Protocol, and each adapter and its in-memory fake (SQL, Astakos, metrics) have each
Protocol method with the same parameters."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from api.adapters.db.actions import SqlActionRepository
from api.adapters.db.host_keys import SqlHostKeyRepository
from api.adapters.db.instances import SqlInstanceRepository
from api.adapters.db.unit_of_work import SqlUnitOfWork, UnitOfWorkFactory
from api.adapters.identity import AstakosIdentity
from api.adapters.metrics import PrometheusMetrics
from api.domain import ports
from tests.fakes import (
    FakeIdentity,
    InMemoryActionRepository,
    InMemoryHostKeyRepository,
    InMemoryInstanceRepository,
    InMemoryUnitOfWork,
    InMemoryUnitOfWorkFactory,
    RecordingMetrics,
)

API = Path(__file__).resolve().parents[2] / "api"
IMPLEMENTATIONS = [
    (ports.IdentityPort, [AstakosIdentity, FakeIdentity]),
    (ports.InstanceRepository, [SqlInstanceRepository, InMemoryInstanceRepository]),
    (ports.ActionRepository, [SqlActionRepository, InMemoryActionRepository]),
    (ports.HostKeyRepository, [SqlHostKeyRepository, InMemoryHostKeyRepository]),
    (ports.UnitOfWork, [SqlUnitOfWork, InMemoryUnitOfWork]),
    (ports.UnitOfWorkFactory, [UnitOfWorkFactory, InMemoryUnitOfWorkFactory]),
    (ports.Metrics, [PrometheusMetrics, ports.NoMetrics, RecordingMetrics]),
]
DB_ADAPTER = API / "adapters" / "db"


def protocol_methods(protocol) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(value) for name, value in vars(protocol).items()
            if inspect.isfunction(value) and (not name.startswith("_")
                                              or name in ("__enter__", "__exit__", "__call__"))}


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("protocol", "implementation"), [
    (protocol, implementation) for protocol, implementations in IMPLEMENTATIONS
    for implementation in implementations])
def test_implementations_have_every_method_of_their_protocol(protocol, implementation):
    methods = protocol_methods(protocol)
    assert methods, protocol
    for name, signature in methods.items():
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        own = inspect.signature(getattr(implementation, name))
        assert parameters(own) == parameters(signature), (implementation.__name__, name)
    for attribute in getattr(protocol, "__annotations__", {}):
        assert attribute in implementation.__annotations__, (implementation.__name__, attribute)


def repository_calls(path: Path) -> set[tuple[str, str]]:
    """(repository, method) of every ``<x>.instances.<m>(...)``, ``<x>.actions.<m>(...)``
    and ``<x>.host_keys.<m>(...)``."""
    calls = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in ("instances", "actions", "host_keys")):
            calls.add((node.func.value.attr, node.func.attr))
    return calls


def test_every_repository_method_called_outside_the_adapter_is_on_its_protocol():
    """The domain, the workers' sweepers, the CLI and the seed use repositories."""
    calls = set()
    for path in API.rglob("*.py"):
        if DB_ADAPTER not in path.parents:
            calls |= repository_calls(path)
    assert {("actions", "claim"), ("actions", "find_resumable"), ("instances", "delete"),
            ("instances", "compare_and_set_status")} <= calls
    protocols = {"instances": ports.InstanceRepository, "actions": ports.ActionRepository,
                 "host_keys": ports.HostKeyRepository}
    missing = sorted((repo, method) for repo, method in calls
                     if method not in protocol_methods(protocols[repo]))
    assert missing == []
