"""Power hooks that let the Synnefo emulator drive lab hosts like real VMs.

The emulator calls `power_on(server)` / `power_off(server)` when a server's status changes
(server: the emulator's dict with at least "id" and "name").
"""

from __future__ import annotations

import logging

from lambda_testbed.lab.lab import Lab

log = logging.getLogger(__name__)


class LabPowerHooks:
    def __init__(self, lab: Lab, server_to_host: dict[str, str], shutdown_grace: float = 0.0):
        self.lab = lab
        self.server_to_host = dict(server_to_host)
        # A Cyclades "shutdown" is an ACPI shutdown: give daemons this long to exit cleanly.
        self.shutdown_grace = shutdown_grace

    def _host(self, server: dict) -> str | None:
        host = self.server_to_host.get(str(server.get("id")))
        if host is None:
            # Servers of other instances have no lab host; they stay purely emulated.
            log.debug("server %s has no lab host", server.get("id"))
        return host

    def power_on(self, server: dict) -> None:
        host = self._host(server)
        if host is not None:
            self.lab.power_on(host)

    def power_off(self, server: dict) -> None:
        host = self._host(server)
        if host is not None:
            self.lab.power_off(host, grace=self.shutdown_grace)
