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

Loading this strategy also shares compiled Jinja templates among the run's forks
(``../jinja_code_cache.py``): each task's worker would compile every template it reads
again. ``LAMBDA_JINJA_CODE_CACHE=0`` turns that off.

Mitogen's multiplexer listens on a unix socket it makes in the temp directory and removes
when it exits; a run that is killed (timeout, cancel) leaves the socket behind. Where
``LAMBDA_MITOGEN_SOCKET_DIR`` names a directory (the runner adapter passes the run's own,
which it removes after every run), the socket is made there instead.
"""

import importlib.util
import os
import sys

from ansible import constants as C
from ansible.utils.display import Display

PINNING_ENV = "LAMBDA_MITOGEN_PINNING"
SOCKET_DIR_ENV = "LAMBDA_MITOGEN_SOCKET_DIR"
CODE_CACHE_ENV = "LAMBDA_JINJA_CODE_CACHE"
_CODE_CACHE_MODULE = "lambda_jinja_code_cache"


def _flag(name: str, default: bool) -> bool:
    # Parsed here, not with api.settings: operators run this plugin from ansible-playbook,
    # where the api package may not be importable.
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


def _jinja_code_cache():
    """The cache module, loaded by path: this file is loaded by path too, not as a package."""
    module = sys.modules.get(_CODE_CACHE_MODULE)
    if module is None:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "jinja_code_cache.py")
        spec = importlib.util.spec_from_file_location(_CODE_CACHE_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[_CODE_CACHE_MODULE] = module
    return module


if _flag(CODE_CACHE_ENV, True):
    # The strategy loads in ansible-playbook's top-level process, before any fork; the
    # directory is inside the run's own local temp dir, which Ansible removes at exit.
    _jinja_code_cache().install(os.path.join(C.DEFAULT_LOCAL_TMP, "jinja-code"))

try:
    import ansible_mitogen.affinity
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as exc:  # a broken install still runs its playbooks, only slower
    from ansible.plugins.strategy.linear import StrategyModule

    Display().warning(f"Mitogen is not importable ({exc}): running the plain linear strategy")
else:
    _socket_dir = os.environ.get(SOCKET_DIR_ENV, "").strip()
    if _socket_dir:
        import tempfile

        import mitogen.unix

        # Read when the multiplexer is set up (ansible_mitogen.process), after this loads.
        mitogen.unix.make_socket_path = lambda: tempfile.mktemp(
            prefix="mitogen_unix_", suffix=".sock", dir=_socket_dir)
    if not _flag(PINNING_ENV, False):
        # Read at each call (ansible_mitogen.affinity.policy.assign_*()), so this is
        # in place before Mitogen starts its multiplexer and forks any worker.
        ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        pass
