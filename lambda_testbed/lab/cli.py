"""`lambda-service lab up|down|status|purge|power-on|power-off|link-down|link-up`."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from lambda_testbed.lab.lab import DEFAULT_NAME, Lab, LabError, purge_stale


def _hosts_arg(value: str) -> list[str] | int:
    """`3` -> a count; `master,slave-1` -> names."""
    return int(value) if value.isdigit() else [v for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-service lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", default=DEFAULT_NAME, help="lab name (default %(default)s)")
        p.add_argument("--base-dir", type=Path, default=None, help="lab state directory")
        return p

    up = named(sub.add_parser("up", help="build the lab and power its hosts on"))
    up.add_argument("--hosts", type=_hosts_arg, default=3,
                    help="a count (one master, the rest slaves) or comma-separated names")
    up.add_argument("--subnet", default="10.213.0.0/24")
    up.add_argument("--no-power-on", action="store_true", help="leave every host off")
    up.add_argument("--bare", action="store_true",
                    help="hosts only: no distributions, inventory or extravars")
    named(sub.add_parser("down", help="remove the lab and everything it runs"))
    named(sub.add_parser("status", help="print the lab's state as JSON"))
    purge = sub.add_parser("purge", help="remove leftovers of crashed labs")
    purge.add_argument("--prefix", default=DEFAULT_NAME)
    for command in ("power-on", "power-off", "link-down", "link-up"):
        named(sub.add_parser(command)).add_argument("host")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except (LabError, KeyError, ValueError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "purge":
        for item in purge_stale(args.prefix):
            print(f"removed {item}")
        return 0
    if args.command == "up":
        hosts = args.hosts
        if isinstance(hosts, int) and not args.bare:
            # Product-style names: a host named "master" would clash with the group.
            from lambda_testbed.lab.provision import host_names

            hosts = host_names(slaves=max(hosts - 1, 0))
        lab = Lab(args.name, hosts, args.subnet, args.base_dir).up(
            power_on=not args.no_power_on
        )
        for h in lab.hosts:
            print(f"{h.name:<18} {h.ip:<15} {h.role:<6} /opt/lambda = {h.root}")
        print(f"ssh key: {lab.ssh_key}")
        example = " ".join(shlex.quote(a) for a in lab.ssh_command(lab.hosts[0].name, "hostname"))
        print(f"example: {example}")
        if not args.bare:
            _provision(lab)
        print(f"remove with: lambda-service lab down --name {lab.name}")
        return 0
    if args.command == "down":
        try:
            lab = Lab.load(args.name, args.base_dir)
        except LabError:
            # No state file (a crash while building): purging by name still finds it all.
            lab = Lab(args.name, 1, base_dir=args.base_dir)
        lab.down()
        print(f"lab {lab.name} removed")
        return 0
    lab = Lab.load(args.name, args.base_dir)
    if args.command == "status":
        print(json.dumps(lab.status(), indent=2))
    elif args.command == "power-on":
        lab.power_on(args.host)
    elif args.command == "power-off":
        lab.power_off(args.host)
    elif args.command == "link-down":
        lab.link_down(args.host)
    elif args.command == "link-up":
        lab.link_up(args.host)
    return 0


def _provision(lab: Lab) -> None:
    """Lay the distributions on every host and write what ansible-playbook needs."""
    from lambda_testbed.lab.provision import install_distributions
    from lambda_testbed.lab.smoke import write_inputs

    install_distributions(lab)
    inventory, extravars = write_inputs(lab, lab.base_dir)
    print(f"inventory: {inventory}")
    print(f"extravars: {extravars}")
    for playbook in ("lambda-start.yml", "smoke.yml", "lambda-stop.yml"):
        print(f"run: ANSIBLE_HOST_KEY_CHECKING=False ansible-playbook -i {inventory} "
              f"-e @{extravars} playbooks/{playbook}")


if __name__ == "__main__":
    sys.exit(main())
