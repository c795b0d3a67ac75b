"""Ansible's linear strategy run over Mitogen, or plain linear where Mitogen is missing.

Mitogen keeps one Python interpreter per host for the whole play instead of starting a
new one for every task: a task costs about a third of the CPU and half the wall time
(``benchmarks/README.md``). Its own plugin file cannot be found by a path that does not
depend on where the package is installed, so ``ansible.cfg`` and the runner adapter point
at this directory and this module loads Mitogen's strategy by import, as Mitogen's own
proxy module does.
"""

from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as exc:  # a broken install still runs its playbooks, only slower
    from ansible.plugins.strategy.linear import StrategyModule

    Display().warning(f"Mitogen is not importable ({exc}): running the plain linear strategy")
else:
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        pass
