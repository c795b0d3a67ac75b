"""A Synnefo (Astakos identity + Cyclades compute) emulator over real HTTP.

``Emulator.from_seed(seed).start()`` serves it in-process; ``python -m api.emulator`` from
the command line.
"""

from api.emulator.cli import main
from api.emulator.server import Emulator
from api.emulator.state import CloudFault, Faults, PowerHooks

__all__ = ["CloudFault", "Emulator", "Faults", "PowerHooks", "main"]
