"""The SSH lab: network namespaces as VMs, for tests, demos and CI.

`Lab("lambdalab", hosts=3).up()` gives hosts master, slave-1 and slave-2 answering SSH as
root with the lab's key; `power_off`/`power_on` and `link_down`/`link_up` mimic a VM's power
and network failures; `down()` removes every trace. See lambda_testbed/lab/lab.py for the layout.
"""

from lambda_testbed.lab.hooks import LabPowerHooks
from lambda_testbed.lab.lab import LAB_ROOT, MOUNT_POINT, Lab, LabError, LabHost, purge_stale

__all__ = [
    "LAB_ROOT",
    "MOUNT_POINT",
    "Lab",
    "LabError",
    "LabHost",
    "LabPowerHooks",
    "main",
    "purge_stale",
]


def main(argv: list[str] | None = None) -> int:
    from lambda_testbed.lab.cli import main as cli_main

    return cli_main(argv)
