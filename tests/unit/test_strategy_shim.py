"""mitogen_linear: the shim beside the playbooks and the directory the runner points at both
hold Mitogen's own linear strategy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.strategy.linear import StrategyModule as Linear
from ansible_mitogen.strategy import StrategyMixin

from api.adapters.ansible import mitogen_strategy_dir
from api.settings import FILES_ROOT


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shim_beside_the_playbooks_is_mitogens_linear_strategy():
    shim = load(FILES_ROOT / "playbooks" / "strategy_plugins" / "mitogen_linear.py",
                "lambda_mitogen_linear_shim")
    assert issubclass(shim.StrategyModule, StrategyMixin)
    assert issubclass(shim.StrategyModule, Linear)


def test_the_runners_strategy_dir_is_mitogens_own():
    assert (Path(mitogen_strategy_dir()) / "mitogen_linear.py").is_file()
    assert Path(mitogen_strategy_dir()).parent.parent.name == "ansible_mitogen"
