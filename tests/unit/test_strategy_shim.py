"""The mitogen_linear strategy shim: Mitogen's strategy when importable, else linear."""

from __future__ import annotations

import importlib.util
import sys

import jinja2
import pytest

from api.adapters.ansible import STRATEGY_PLUGINS_DIR

SHIM = f"{STRATEGY_PLUGINS_DIR}/mitogen_linear.py"


@pytest.fixture(autouse=True)
def local_tmp(monkeypatch, tmp_path):
    """Loading the shim wraps jinja2's compile: undone after each test, cache in tmp_path."""
    from ansible import constants

    monkeypatch.setattr(jinja2.Environment, "compile", jinja2.Environment.compile)
    monkeypatch.setattr(constants, "DEFAULT_LOCAL_TMP", str(tmp_path))
    monkeypatch.delenv("LAMBDA_JINJA_CODE_CACHE", raising=False)
    return tmp_path


def load_shim(name: str):
    spec = importlib.util.spec_from_file_location(name, SHIM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shim_is_mitogens_linear_strategy():
    import ansible_mitogen.strategy
    from ansible.plugins.strategy.linear import StrategyModule as Linear

    strategy = load_shim("shim_with_mitogen").StrategyModule
    assert issubclass(strategy, ansible_mitogen.strategy.StrategyMixin)
    assert issubclass(strategy, Linear)


def test_without_mitogen_the_shim_is_plain_linear(monkeypatch, capsys):
    from ansible.plugins.strategy.linear import StrategyModule as Linear

    # None in sys.modules makes "import ansible_mitogen..." raise ImportError.
    monkeypatch.setitem(sys.modules, "ansible_mitogen", None)
    assert load_shim("shim_without_mitogen").StrategyModule is Linear
    assert "Mitogen is not importable" in capsys.readouterr().err


def test_the_shim_turns_mitogens_cpu_pinning_off_unless_asked(monkeypatch):
    import ansible_mitogen.affinity as affinity

    mitogens = object()  # stands for Mitogen's pinning policy; restored after the test
    monkeypatch.setattr(affinity, "policy", mitogens)
    monkeypatch.delenv("LAMBDA_MITOGEN_PINNING", raising=False)
    load_shim("shim_unpinned")
    assert type(affinity.policy) is affinity.Policy  # every assign_*() does nothing

    monkeypatch.setattr(affinity, "policy", mitogens)
    monkeypatch.setenv("LAMBDA_MITOGEN_PINNING", "1")
    load_shim("shim_pinned")
    assert affinity.policy is mitogens


def test_the_shim_caches_compiled_templates_in_the_runs_local_temp_dir(local_tmp):
    load_shim("shim_with_code_cache")
    assert jinja2.Environment.compile.lambda_code_cache == str(local_tmp / "jinja-code")


def test_the_code_cache_can_be_turned_off(monkeypatch):
    before = jinja2.Environment.compile
    monkeypatch.setenv("LAMBDA_JINJA_CODE_CACHE", "0")
    load_shim("shim_without_code_cache")
    assert jinja2.Environment.compile is before
