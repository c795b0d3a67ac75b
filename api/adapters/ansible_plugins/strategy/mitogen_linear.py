"""Ansible's linear strategy run over Mitogen, or plain linear where Mitogen is missing.

Mitogen keeps one Python interpreter per host for the whole play instead of starting a
new one for every task: a task costs about a third of the CPU and half the wall time
(``benchmarks/README.md``). Its own plugin file cannot be found by a path that does not
depend on where the package is installed, so ``ansible.cfg`` and the runner adapter point
at this directory and this module loads Mitogen's strategy by import, as Mitogen's own
proxy module does.

Mitogen also pins its processes to CPUs: on a machine with 2 or 3 CPUs its multiplexer
gets CPU 0 and everything else of the controller (Ansible's top-level process, each
task's worker, every ssh client) gets CPU 1 alone, while the kernel would spread them
over both. On the 2-core benchmark machine a start of 8 lab hosts took 8.3-8.8 s pinned
and 6.9-7.6 s unpinned (``benchmarks/README.md``). So the pinning is off here (Mitogen's
own no-op policy) unless ``LAMBDA_MITOGEN_PINNING=1`` asks for it, say on a big
controller that runs nothing else.
"""

import os

from ansible.utils.display import Display

PINNING_ENV = "LAMBDA_MITOGEN_PINNING"

try:
    import ansible_mitogen.affinity
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as exc:  # a broken install still runs its playbooks, only slower
    from ansible.plugins.strategy.linear import StrategyModule

    Display().warning(f"Mitogen is not importable ({exc}): running the plain linear strategy")
else:
    if os.environ.get(PINNING_ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
        # Read at each call (ansible_mitogen.affinity.policy.assign_*()), so this is
        # in place before Mitogen starts its multiplexer and forks any worker.
        ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        pass
