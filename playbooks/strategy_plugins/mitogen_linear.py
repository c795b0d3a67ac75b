"""Mitogen's linear strategy, found beside the playbooks.

Mitogen's documentation points ``strategy_plugins`` at the ``plugins/strategy`` directory
of the installed ``ansible_mitogen``, a path that depends on where it is installed. Ansible
loads the ``strategy_plugins`` directory beside a playbook on its own, so this file only
imports Mitogen's strategy: plain ``ansible-playbook`` and the service's runner both find it.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
