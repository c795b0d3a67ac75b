"""The services' dependency chains, and the playbooks that start and stop each.

playbooks/lambda-start.yml draws the graph: HDFS -> YARN; ZooKeeper -> Kafka; Spark master
-> Spark workers. The chains need nothing of each other, so the service runs each chain's
playbook as a run of its own, side by side (``PLAYBOOK_CHAINS``); the whole playbook, which
imports the same chain playbooks in order, is what an operator runs by hand, and what the
service runs with ``LAMBDA_PLAYBOOK_CHAINS=one-after-another``.
"""

from __future__ import annotations

from collections.abc import Mapping

# LAMBDA_PLAYBOOK_CHAINS: how a start's and a stop's chains run.
CHAIN_MODES = ("side-by-side", "one-after-another")

# The chains, in the order the whole playbook imports them (the order of a plain run).
START_CHAINS = (
    "lambda-start-hdfs-yarn.yml",
    "lambda-start-zookeeper-kafka.yml",
    "lambda-start-spark.yml",
)
STOP_CHAINS = (
    "lambda-stop-spark.yml",
    "lambda-stop-zookeeper-kafka.yml",
    "lambda-stop-hdfs-yarn.yml",
)
# Each chain's service checks: no check needs another's (lambda-check.yml).
CHECK_CHAINS = (
    "lambda-check-hdfs-yarn.yml",
    "lambda-check-zookeeper-kafka.yml",
    "lambda-check-spark.yml",
)
PLAYBOOK_CHAINS: Mapping[str, tuple[str, ...]] = {
    "lambda-start.yml": START_CHAINS,
    "lambda-stop.yml": STOP_CHAINS,
    "lambda-check.yml": CHECK_CHAINS,
}


def chain_name(playbook: str) -> str:
    """``lambda-start-hdfs-yarn.yml`` -> ``hdfs-yarn``: names a chain's run and its group."""
    stem = playbook.removesuffix(".yml")
    for prefix in ("lambda-start-", "lambda-stop-", "lambda-check-"):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem
