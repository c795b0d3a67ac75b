"""Stand-ins for Kafka's client tools: ``kafka-topics.sh``, ``kafka-console-producer.sh``,
``kafka-console-consumer.sh`` and ``kafka-broker-api-versions.sh``.

They take the real tools' options (Kafka 3.x, ``--bootstrap-server`` only) and print what the
real ones print; they talk to the stand-in brokers (``kafka.Broker``): the cluster's metadata
from a bootstrap broker, then each partition's leader, as a real client does.
"""

from __future__ import annotations

import base64
import re
import sys
import time

from . import common

# Options that take a value (the others are flags), per tool.
VALUED = {
    "topics": {"--bootstrap-server", "--topic", "--partitions", "--replication-factor",
               "--config", "--command-config", "--replica-assignment"},
    "console-producer": {"--bootstrap-server", "--broker-list", "--topic", "--property",
                         "--producer-property", "--request-required-acks", "--compression-codec",
                         "--producer.config", "--timeout"},
    "console-consumer": {"--bootstrap-server", "--topic", "--max-messages", "--timeout-ms",
                         "--partition", "--offset", "--group", "--property",
                         "--consumer-property", "--consumer.config", "--formatter",
                         "--isolation-level"},
    "broker-api-versions": {"--bootstrap-server", "--command-config"},
}
TOPIC_ACTIONS = ("--create", "--delete", "--describe", "--list", "--alter")


class ToolError(Exception):
    """Printed the way the real tool prints its failure."""


def stamp() -> str:
    now = time.time()
    return time.strftime("[%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}]"


def parse(tool: str, args: list[str]) -> tuple[dict[str, str], set[str]]:
    options, flags, i = {}, set(), 0
    while i < len(args):
        name = args[i]
        if name in VALUED[tool]:
            if i + 1 >= len(args):
                raise ToolError(f"Option {name} requires an argument")
            options[name] = args[i + 1]
            i += 2
        elif name.startswith("--"):
            flags.add(name)
            i += 1
        else:
            raise ToolError(f"Found non-option argument {name!r}")
    return options, flags


class Cluster:
    """What a client knows: the bootstrap brokers, then the live brokers and the topics."""

    def __init__(self, bootstrap: str | None):
        if not bootstrap:
            raise ToolError('Missing required argument "[bootstrap-server]"')
        self.bootstrap = [common.split_address(s, 9092) for s in bootstrap.split(",") if s]

    def call(self, request: dict, address=None) -> dict:
        """A request to ``address`` (else the first bootstrap broker that answers)."""
        last = None
        for target in [address] if address else self.bootstrap:
            try:
                return common.call_once(target, request, timeout=30)
            except (OSError, ValueError, ConnectionError) as exc:
                last = f"Connection to node -1 ({target[0]}/{target[0]}:{target[1]}) could not " \
                       f"be established. Broker may not be available. ({exc})"
        raise ToolError(f"Timed out waiting for a node assignment. {last}")

    def brokers(self) -> list[dict]:
        return self.checked(self.call({"op": "brokers"}))["brokers"]

    def topics(self) -> dict:
        return self.checked(self.call({"op": "topics"}))["topics"]

    def leader(self, topic: str, partition: str) -> tuple[str, int]:
        leader = self.topics()[topic][partition]["leader"]
        broker = next((b for b in self.brokers() if b["id"] == leader), None)
        if broker is None:
            raise ToolError(f"LEADER_NOT_AVAILABLE for {topic}-{partition}")
        return broker["host"], broker["port"]

    @staticmethod
    def checked(reply: dict) -> dict:
        if not reply.get("ok"):
            raise ToolError(reply.get("message") or reply.get("error") or "unknown error",
                            reply.get("error"))
        return reply


def matching(pattern: str | None, names) -> list[str]:
    """``--topic`` is a regular expression to describe, list and delete, as in the real tool."""
    if pattern is None:
        return sorted(names)
    try:
        regex = re.compile(pattern)
    except re.error:
        return [pattern] if pattern in names else []
    return sorted(n for n in names if regex.fullmatch(n))


# --- kafka-topics.sh ---------------------------------------------------------------------------


def topics(args: list[str]) -> int:
    try:
        options, flags = parse("topics", args)
        actions = [a for a in TOPIC_ACTIONS if a in flags]
        if len(actions) != 1:
            raise ToolError("Command must include exactly one action: --list, --describe, "
                            "--create, --alter or --delete")
        cluster = Cluster(options.get("--bootstrap-server"))
    except ToolError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    action, topic = actions[0], options.get("--topic")
    try:
        if action != "--list" and action != "--describe" and not topic:
            raise ToolError(f"Missing required argument \"[topic]\" for {action}")
        if action == "--create":
            reply = cluster.call({"op": "create_topic", "topic": topic,
                                  "partitions": options.get("--partitions"),
                                  "replication_factor": options.get("--replication-factor")})
            if reply.get("error") == "TopicExistsException" and "--if-not-exists" in flags:
                return 0
            cluster.checked(reply)
            print(f"Created topic {topic}.")
            return 0
        known = cluster.topics()
        chosen = matching(topic, known)
        if topic and not chosen and action in ("--describe", "--delete", "--alter"):
            if "--if-exists" in flags:
                return 0
            raise ToolError(f"Topic '{topic}' does not exist as expected",
                            "IllegalArgumentException")
        if action == "--list":
            for name in chosen:
                print(name)
        elif action == "--describe":
            for name in chosen:
                describe(name, known[name])
        elif action == "--delete":
            for name in chosen:
                cluster.checked(cluster.call({"op": "delete_topic", "topic": name}))
        else:
            raise ToolError("--alter is not supported by this stand-in")
    except ToolError as exc:
        message = exc.args[0]
        kind = exc.args[1] if len(exc.args) > 1 and exc.args[1] else "KafkaException"
        # As TopicCommand: the message on stdout, the exception logged on stderr.
        print(f"Error while executing topic command : {message}")
        print(f"{stamp()} ERROR org.apache.kafka.common.errors.{kind}: {message}\n"
              " (kafka.admin.TopicCommand$)", file=sys.stderr)
        return 1
    return 0


def describe(name: str, partitions: dict) -> None:
    first = partitions[min(partitions, key=int)]
    topic_id = base64.urlsafe_b64encode(name.encode().ljust(16, b"_")[:16]).decode().rstrip("=")
    print(f"Topic: {name}\tTopicId: {topic_id}\tPartitionCount: {len(partitions)}\t"
          f"ReplicationFactor: {len(first['replicas'])}\tConfigs: ")
    for number in sorted(partitions, key=int):
        part = partitions[number]
        print(f"\tTopic: {name}\tPartition: {number}\tLeader: {part['leader']}\t"
              f"Replicas: {','.join(map(str, part['replicas']))}\t"
              f"Isr: {','.join(map(str, part['isr']))}")


# --- kafka-console-producer.sh -------------------------------------------------------------------


def console_producer(args: list[str]) -> int:
    try:
        options, _flags = parse("console-producer", args)
        if not options.get("--topic"):
            raise ToolError('Missing required argument "[topic]"')
        cluster = Cluster(options.get("--bootstrap-server") or options.get("--broker-list"))
    except ToolError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    topic = options["--topic"]
    lines = [line.rstrip("\n") for line in sys.stdin]
    records = [base64.b64encode(line.encode()).decode() for line in lines]
    try:
        known = cluster.topics()
        if topic not in known:
            # The broker's auto.create.topics.enable (true by default) creates it.
            print(f"{stamp()} WARN [Producer clientId=console-producer] Error while fetching "
                  f"metadata with correlation id 1 : {{{topic}=LEADER_NOT_AVAILABLE}} "
                  "(org.apache.kafka.clients.NetworkClient)", file=sys.stderr)
            cluster.checked(cluster.call({"op": "create_topic", "topic": topic}))
        if records:
            leader = cluster.leader(topic, "0")
            cluster.checked(cluster.call({"op": "produce", "topic": topic, "partition": 0,
                                          "records": records}, leader))
    except ToolError as exc:
        for line in lines:
            print(f"{stamp()} ERROR Error when sending message to topic {topic} with key: null, "
                  f"value: {len(line.encode())} bytes with error: "
                  "(org.apache.kafka.clients.producer.internals.ErrorLoggingCallback)\n"
                  f"org.apache.kafka.common.errors.KafkaException: {exc.args[0]}",
                  file=sys.stderr)
        return 1
    return 0


# --- kafka-console-consumer.sh -------------------------------------------------------------------


def console_consumer(args: list[str]) -> int:
    try:
        options, flags = parse("console-consumer", args)
        if not options.get("--topic"):
            raise ToolError("Exactly one of whitelist/include/topic is required.")
        cluster = Cluster(options.get("--bootstrap-server"))
        limit = int(options.get("--max-messages", "-1"))
        timeout = int(options.get("--timeout-ms", "-1")) / 1000
    except (ToolError, ValueError) as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    topic, count = options["--topic"], 0
    positions: dict[str, int] = {}  # partition -> next offset
    last_message = time.monotonic()
    try:
        while limit < 0 or count < limit:
            partitions = cluster.topics().get(topic, {})
            got = False
            for number in sorted(partitions, key=int):
                reply = cluster.checked(cluster.call(
                    {"op": "fetch", "topic": topic, "partition": int(number),
                     "offset": positions.get(number, 0)}, cluster.leader(topic, number)))
                if number not in positions and "--from-beginning" not in flags:
                    positions[number] = reply["high_watermark"]  # only what comes next
                    continue
                for record in reply["records"][: (limit - count) if limit >= 0 else None]:
                    print(base64.b64decode(record).decode(errors="replace"), flush=True)
                    count += 1
                    got = True
                positions[number] = positions.get(number, 0) + len(reply["records"])
                if 0 <= limit <= count:
                    break
            if got:
                last_message = time.monotonic()
            elif timeout >= 0 and time.monotonic() - last_message > timeout:
                print(f"{stamp()} ERROR Error processing message, terminating consumer process: "
                      " (kafka.tools.ConsoleConsumer$)\n"
                      "org.apache.kafka.common.errors.TimeoutException", file=sys.stderr)
                break
            else:
                time.sleep(0.1)
    except ToolError as exc:
        print(f"{stamp()} ERROR Error processing message, terminating consumer process: "
              f" (kafka.tools.ConsoleConsumer$)\n{exc.args[0]}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    # As the real consumer: the count on stderr, and status 0 however it ended.
    print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


# --- kafka-broker-api-versions.sh ----------------------------------------------------------------

API_VERSIONS = ("\tProduce(0): 0 to 9 [usable: 9],\n\tFetch(1): 0 to 15 [usable: 15],\n"
                "\tListOffsets(2): 0 to 8 [usable: 8],\n\tMetadata(3): 0 to 12 [usable: 12],\n"
                "\tCreateTopics(19): 0 to 7 [usable: 7],\n\tDeleteTopics(20): 0 to 6 [usable: 6]")


def broker_api_versions(args: list[str]) -> int:
    """Each live broker (the cluster's metadata) and the API versions it answers."""
    try:
        options, _flags = parse("broker-api-versions", args)
        cluster = Cluster(options.get("--bootstrap-server"))
        brokers = cluster.brokers()
    except ToolError as exc:
        print(f"{stamp()} ERROR {exc.args[0]}", file=sys.stderr)
        return 1
    for broker in brokers:
        node = f"{broker['host']}:{broker['port']} (id: {broker['id']} rack: null)"
        try:
            cluster.call({"op": "brokers"}, (broker["host"], broker["port"]))
        except ToolError as exc:
            print(f"{node} -> ERROR: {exc.args[0]}")
            continue
        print(f"{node} -> (\n{API_VERSIONS}\n)")
    return 0


TOOLS = {"topics": topics, "console-producer": console_producer,
         "console-consumer": console_consumer, "broker-api-versions": broker_api_versions}


def main(argv: list[str]) -> int:
    _home, tool, args = argv[0], argv[1], argv[2:]
    return TOOLS[tool](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
