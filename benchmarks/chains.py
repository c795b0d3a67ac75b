"""Part 5: the start's dependency chains one after another against side by side.

The demo as ``lambda-service demo`` has it (one instance of a master and two slaves on
loopback addresses, ``ansible_connection=local``, the emulator with its 1 s power
transitions, the stand-ins at their default start-to-ready delays), driven in process:
two orchestrators on the one database, one with ``LAMBDA_PLAYBOOK_CHAINS=one-after-another``
(the whole lambda-start.yml, as before) and one ``side-by-side``, take turns: start, stop,
start with the other, stop, ``repeats`` times. The figure is the median start time of the
side-by-side starts over that of the one-after-another ones (``CHAINS_RATIO``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("one-after-another", "side-by-side")
BENCH_SUBNET = "127.42.249"


@dataclass
class ChainsResult:
    starts: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    playbook: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    failures: list[str] = field(default_factory=list)
    checks_share: str = "n/a (no checks step)"

    def ratio(self) -> float | None:
        serial, side = self.starts["one-after-another"], self.starts["side-by-side"]
        if not serial or not side:
            return None
        return statistics.median(side) / statistics.median(serial)

    def print(self, out) -> dict[str, str]:
        def p(text=""):
            print(text, file=out, flush=True)

        p(f"{'chains':<20} {'starts':>6} {'start s (median)':>17} {'playbook s':>11}")
        for mode in MODES:
            starts, plays = self.starts[mode], self.playbook[mode]
            start = f"{statistics.median(starts):.1f}" if starts else "n/a"
            play = f"{statistics.median(plays):.1f}" if plays else "n/a"
            p(f"{mode:<20} {len(starts):>6} {start:>17} {play:>11}")
        for failure in self.failures:
            p(f"failed: {failure}")
        p(f"checks' share of a start: {self.checks_share}")
        ratio = self.ratio()
        return {"CHAINS_RATIO": f"{ratio:.2f}" if ratio is not None else "n/a",
                "CHECKS_SHARE": self.checks_share}


def _seconds(step) -> float | None:
    if step is None or step.started_at is None or step.finished_at is None:
        return None
    return (step.finished_at - step.started_at).total_seconds()


def run_chains(workdir: Path, out, repeats: int = 3) -> ChainsResult:
    from cryptography.fernet import Fernet

    from api.bootstrap import bootstrap
    from api.domain import services
    from api.domain.model import ActionState, StepName
    from api.domain.ports import Identity
    from api.seed import seed_database
    from api.settings import load_settings
    from lambda_testbed import standins
    from lambda_testbed.demo import kill_processes_under
    from lambda_testbed.demo_data import (
        DEMO_INSTANCE_ID,
        DEMO_TOKEN,
        DEMO_USER_ID,
        DEMO_USER_NAME,
        demo_seed,
    )
    from lambda_testbed.emulator import Emulator

    state = (workdir / "chains").resolve()
    state.mkdir(parents=True)
    seed = demo_seed(instances=1)
    # Its own loopback addresses: a demo or the tests on this machine use 127.42.k.x.
    for index, host in enumerate(seed["instances"][0]["hosts"], start=1):
        host["ip"] = f"{BENCH_SUBNET}.{index}"
    emulator = Emulator.from_seed(seed)
    emulator.start("127.0.0.1", 0)
    homes = standins.install(state / "dist")  # the default start-to-ready delays
    import yaml

    (state / "extravars.yml").write_text(yaml.safe_dump(
        dict(homes, lambda_host_root=str(state / "hosts") + "/{{ inventory_hostname }}")))
    (state / "tmp").mkdir()
    os.environ["TMPDIR"] = str(state / "tmp")
    env = {
        "LAMBDA_DATABASE_URL": f"sqlite:///{state / 'lambda.db'}",
        "LAMBDA_AUTH_URL": emulator.auth_url,
        "LAMBDA_STATE_DIR": str(state),
        "LAMBDA_ANSIBLE_CONNECTION": "local",
        "LAMBDA_EXTRAVARS_FILE": str(state / "extravars.yml"),
        "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
        "LAMBDA_POLL_INTERVAL": "0.2",
        "LAMBDA_LOG_LEVEL": "WARNING",
    }
    result = ChainsResult()
    containers = {}
    try:
        for mode in MODES:
            settings = load_settings(env=dict(env, LAMBDA_PLAYBOOK_CHAINS=mode))
            containers[mode] = bootstrap(settings, run_migrations=mode == MODES[0])
        seed_database(containers[MODES[0]].uow_factory, seed)
        identity = Identity(DEMO_USER_ID, DEMO_USER_NAME, emulator.compute_url)

        def act(mode: str, action: str):
            container = containers[mode]
            accepted = services.request_action(
                container.uow_factory, identity, DEMO_INSTANCE_ID, action,
                encrypt_token=lambda: container.token_cipher.encrypt(DEMO_TOKEN))
            began = time.monotonic()
            ended = container.orchestrator.run(accepted.action.id)
            took = time.monotonic() - began
            with container.uow_factory() as uow:
                done = uow.actions.get(accepted.action.id)
            if ended is not ActionState.SUCCEEDED:
                raise RuntimeError(f"{action} ({mode}) ended {ended}: {done.error}")
            playbook = next((s for s in done.steps if s.name is StepName.PLAYBOOK), None)
            # The service checks' step, once the start has one (issue 23, items 1-2).
            checks = [_seconds(s) for s in done.steps if "check" in str(s.name.value)]
            return took, _seconds(playbook), sum(c for c in checks if c) if checks else None

        print(f"demo instance: 1 master + 2 slaves, stand-ins at their default delays, "
              f"{repeats} starts per mode", file=out, flush=True)
        shares: list[float] = []
        for repeat in range(repeats):
            order = MODES if repeat % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                try:
                    took, playbook, checks = act(mode, "start")
                    result.starts[mode].append(took)
                    if checks is not None:
                        shares.append(checks / took)
                    if playbook is not None:
                        result.playbook[mode].append(playbook)
                    print(f"  round {repeat + 1}: {mode} start {took:.1f}s", file=out,
                          flush=True)
                    act(mode, "stop")
                except Exception as exc:  # a failed round is reported, the rest goes on
                    result.failures.append(f"round {repeat + 1} {mode}: {exc}")
                    print(f"  round {repeat + 1}: {mode} failed: {exc}", file=sys.stderr)
        if shares:
            result.checks_share = f"{statistics.median(shares):.0%}"
    finally:
        for container in containers.values():
            container.close()
        emulator.stop()
        kill_processes_under(state)
    return result
