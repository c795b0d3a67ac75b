"""Table definitions. Alembic migrations under ``migrations/`` create and upgrade them."""

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

instances = Table(
    "lambda_instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("services", JSON, nullable=False),
    Column("failure_message", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # Host names the last successful start left out; NULL or [] when none (migration 0008).
    Column("left_out_hosts", JSON),
    Index("ix_lambda_instances_owner", "owner", "created_at"),
)

hosts = Table(
    "instance_hosts",
    metadata,
    Column(
        "instance_id",
        String(36),
        ForeignKey("lambda_instances.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("server_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("role", String(8), nullable=False),
    Column("ip", String(64), nullable=False),
    # Hosts are always read in order (migration 0003).
    Index("ix_instance_hosts_position", "instance_id", "position"),
)

actions = Table(
    "actions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "instance_id",
        String(36),
        ForeignKey("lambda_instances.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("owner", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("compute_url", Text),
    # The caller's token, encrypted with the server key; erased when the action ends.
    Column("encrypted_token", Text),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", DateTime),
    # The seq of the action's newest event: an appender takes the next ones by raising it
    # (see ``SqlActionRepository._append``).
    Column("last_event", Integer, nullable=False, default=0, server_default=text("0")),
    # Who asked to cancel the action, and when: the worker holding it polls these
    # (migration 0007).
    Column("cancel_requested_by", String(64)),
    Column("cancel_requested_at", DateTime),
    # A start's slaves to leave out, by host name; NULL or [] when none (migration 0008).
    Column("excluded_hosts", JSON),
    Index("ix_actions_instance", "instance_id", "created_at"),
    Index("ix_actions_state", "state"),
)

steps = Table(
    "action_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(36), ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("name", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("message", Text),
    Index("ix_action_steps_action", "action_id", "id"),
)

tasks = Table(
    "action_tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(36), ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("task", Text, nullable=False),
    Column("role", String(64)),
    Column("play", Text),
    Column("status", String(16), nullable=False),
    Column("message", Text),
    Column("duration", Float),
    Index("ix_action_tasks_action", "action_id", "id"),
)

# What happened to an action, in order: its states, its steps' starts and ends, its tasks'
# results. The action resource and its event stream read these rows.
action_events = Table(
    "action_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(36), ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("type", String(16), nullable=False),
    Column("attempt", Integer),
    Column("data", JSON, nullable=False),
    # Also the index of the stream's read: an action's events after a seq, in order.
    UniqueConstraint("action_id", "seq", name="uq_action_events_seq"),
)

# SSH host keys pinned on first sight, per cloud server: a server keeps its id for life, and
# a VM created anew (a new id) starts with no pin. ``lambda-service hostkeys forget`` drops
# the pins of a server reinstalled in place.
host_keys = Table(
    "host_keys",
    metadata,
    Column("server_id", String(64), primary_key=True),
    Column("key_type", String(64), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("host_name", String(255), nullable=False),
    Column("pinned_at", DateTime, nullable=False),
)
