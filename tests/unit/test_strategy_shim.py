"""The mitogen_linear strategy shim: Mitogen's strategy when importable, else linear."""

from __future__ import annotations

import importlib.util
import sys

from api.adapters.ansible import STRATEGY_PLUGINS_DIR

SHIM = f"{STRATEGY_PLUGINS_DIR}/mitogen_linear.py"


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
