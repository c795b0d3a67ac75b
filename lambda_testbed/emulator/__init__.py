"""A Synnefo (Astakos identity + Cyclades compute) emulator over real HTTP.

``Emulator.from_seed(seed).start()`` serves it in-process;
``python -m lambda_testbed.emulator`` from the command line.
"""

from lambda_testbed.emulator.cli import main
from lambda_testbed.emulator.server import Emulator
from lambda_testbed.emulator.state import CloudFault, Faults, PowerHooks

__all__ = ["CloudFault", "Emulator", "Faults", "PowerHooks", "main"]
