"""The action use case: its checks on the in-memory fake of the ports, and the race and
the paging on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from api.domain import services
from api.domain.clock import utcnow
from api.domain.errors import (
    ActionConflict,
    ActionNotFound,
    InstanceNotFound,
    InvalidAction,
    InvalidParameter,
)
from api.domain.model import (
    ActionKind,
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
    StepName,
)
from api.domain.ports import Identity
from tests.fakes import InMemoryUnitOfWorkFactory

ALICE = Identity(user_id="alice-uuid", user_name="alice", compute_url="http://compute")
BOB = Identity(user_id="bob-uuid", user_name="bob", compute_url="http://compute")
INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"


def add_instance(uow_factory, status=InstanceStatus.STOPPED, owner="alice-uuid",
                 instance_id=INSTANCE_ID):
    with uow_factory() as uow:
        uow.instances.add(Instance(
            id=instance_id, owner=owner, name="one", status=status,
            services=("hdfs", "spark"),
            hosts=(Host("1", "m", HostRole.MASTER, "127.0.0.2"),
                   Host("2", "s", HostRole.SLAVE, "127.0.0.3"))))
        uow.commit()


@pytest.fixture
def memory():
    return InMemoryUnitOfWorkFactory()


def request(uow_factory, action="start", identity=ALICE, instance_id=INSTANCE_ID):
    return services.request_action(uow_factory, identity, instance_id, action,
                                   encrypt_token=lambda: "cipher")


@pytest.mark.parametrize("make", [uuid.uuid1, uuid.uuid4, lambda: uuid.UUID(int=0),
                                  lambda: uuid.UUID(int=2**128 - 1)])
def test_parse_instance_id_gives_the_canonical_form(make):
    value = make()
    canonical = str(value)
    for form in (canonical, canonical.upper(), value.hex, f"{{{canonical}}}",
                 f"urn:uuid:{canonical}"):
        assert services.parse_instance_id(form) == canonical


@pytest.mark.parametrize("raw", ["", "3", "not-a-uuid", INSTANCE_ID + "\n", INSTANCE_ID[:-1],
                                 INSTANCE_ID + "0", INSTANCE_ID.replace("-", "_"), None, 5])
def test_parse_instance_id_refuses_what_is_not_a_uuid(raw):
    with pytest.raises(InstanceNotFound):
        services.parse_instance_id(raw)


def test_accepts_and_records_the_action_durably(memory):
    add_instance(memory)
    accepted = request(memory)
    with memory() as uow:
        stored = uow.actions.get(accepted.action.id)
        instance = uow.instances.get(INSTANCE_ID)
    assert stored.kind is ActionKind.START and stored.state is ActionState.ACCEPTED
    assert instance.status is InstanceStatus.STARTING
    assert [h.name for h in instance.hosts] == ["m", "s"]


@pytest.mark.parametrize("raw_id", ["nope", "", "1", INSTANCE_ID + "x"])
def test_non_uuid_ids_are_not_found(memory, raw_id):
    with pytest.raises(InstanceNotFound):
        request(memory, instance_id=raw_id)


def test_someone_elses_instance_is_not_found(memory):
    add_instance(memory)
    with pytest.raises(InstanceNotFound):
        request(memory, identity=BOB)


def test_not_found_comes_before_a_bad_action(memory):
    with pytest.raises(InstanceNotFound):
        request(memory, action="restart")


@pytest.mark.parametrize("action", [None, "", "restart", 3, ["start"]])
def test_bad_action_is_invalid(memory, action):
    add_instance(memory)
    with pytest.raises(InvalidAction):
        request(memory, action=action)


@pytest.mark.parametrize(("status", "action", "detail"), [
    (InstanceStatus.STARTED, "start", "The specified lambda instance is already started."),
    (InstanceStatus.STOPPED, "stop", "The specified lambda instance is already stopped."),
    (InstanceStatus.STOPPING, "start",
     "Can't start a lambda instance while lambda instance status is STOPPING."),
    (InstanceStatus.STARTING, "stop",
     "Can't stop a lambda instance while lambda instance status is STARTING."),
    (InstanceStatus.PENDING, "start",
     "Can't start a lambda instance while lambda instance status is PENDING."),
])
def test_conflicts(memory, status, action, detail):
    add_instance(memory, status=status)
    with pytest.raises(ActionConflict) as info:
        request(memory, action=action)
    assert info.value.detail == detail


@pytest.mark.parametrize(("status", "action"), [
    (InstanceStatus.FAILED, "start"), (InstanceStatus.FAILED, "stop"),
    (InstanceStatus.STARTED, "stop")])
def test_allowed_transitions(memory, status, action):
    add_instance(memory, status=status)
    assert request(memory, action=action).action.kind.value == action


def test_racing_requests_accept_exactly_one(uow_factory):
    add_instance(uow_factory)
    barrier = threading.Barrier(8)
    outcomes = []

    def race():
        barrier.wait()
        try:
            request(uow_factory)
            outcomes.append("accepted")
        except ActionConflict as exc:
            outcomes.append(exc.detail)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("accepted") == 1
    assert set(outcomes) - {"accepted"} == {
        "Can't start a lambda instance while lambda instance status is STARTING."}


def test_list_pages_and_rejects_negative_limit(uow_factory):
    for i in range(5):
        add_instance(uow_factory, instance_id=f"00000000-0000-0000-0000-00000000000{i}")
    add_instance(uow_factory, owner="bob-uuid",
                 instance_id="00000000-0000-0000-0000-0000000000ff")
    page, total = services.list_instances(uow_factory, ALICE, 2, 1)
    assert total == 5 and [i.id[-1] for i in page] == ["1", "2"]
    with pytest.raises(Exception, match="negative"):
        services.list_instances(uow_factory, ALICE, -1, 0)


# --- cancel ---------------------------------------------------------------------------------


def cancel(uow_factory, action_id, identity=ALICE, instance_id=INSTANCE_ID):
    return services.cancel_action(uow_factory, identity, instance_id, action_id)


def test_cancel_ends_an_unclaimed_action_at_once_and_then_is_a_409(uow_factory):
    add_instance(uow_factory)
    action_id = request(uow_factory).action.id
    cancelled = cancel(uow_factory, action_id)
    assert cancelled.state is ActionState.CANCELLED and cancelled.finished_at is not None
    assert cancelled.cancel_requested_by == "alice-uuid"
    assert cancelled.error == "start cancelled by alice-uuid before any step began: " \
                              "nothing was changed"
    with uow_factory() as uow:
        instance = uow.instances.get(INSTANCE_ID)
        # The worker the dispatch reaches finds it ended: nothing runs.
        assert uow.actions.claim(action_id, "w1", utcnow(), 30) is None
        events = [e.data for e in uow.actions.events(action_id, 0, 10)]
    assert [(e["state"], e.get("cancel_requested_by")) for e in events] == [
        ("accepted", None), ("accepted", "alice-uuid"), ("cancelled", None)]
    assert events[-1]["error"] == cancelled.error
    assert instance.status is InstanceStatus.FAILED
    assert instance.failure_message == cancelled.error
    with pytest.raises(ActionConflict) as info:
        cancel(uow_factory, action_id)
    assert info.value.detail == "The action has already ended (cancelled)."
    assert request(uow_factory).action.kind is ActionKind.START  # FAILED allows a start


def test_cancel_of_a_held_action_is_left_to_its_worker_until_it_is_handed_back(uow_factory):
    add_instance(uow_factory)
    action_id = request(uow_factory).action.id
    with uow_factory() as uow:  # a worker holds it; its lease has already lapsed
        assert uow.actions.claim(action_id, "w1", utcnow(), 0) is not None
        uow.commit()
    first = cancel(uow_factory, action_id)
    assert first.state is ActionState.RUNNING and first.cancel_requested_by == "alice-uuid"
    # An expired lease is no proof its worker stopped: the next claim sees the request.
    with uow_factory() as uow:
        claim = uow.actions.claim(action_id, "w2", utcnow(), 60)
        assert claim.cancel_requested_by == "alice-uuid"
        assert uow.actions.cancel_requested(action_id) == "alice-uuid"
        uow.actions.start_step(action_id, claim.attempt, StepName.PLAYBOOK, utcnow())
        uow.commit()
    again = cancel(uow_factory, action_id)
    assert again.state is ActionState.RUNNING  # w2 holds it: w2 ends it
    assert again.cancel_requested_at == first.cancel_requested_at  # the first request stays
    with uow_factory() as uow:  # handed back on a shutdown: nobody holds it now
        uow.actions.release(action_id, "w2", utcnow())
        uow.commit()
    ended = cancel(uow_factory, action_id)
    assert ended.state is ActionState.CANCELLED
    assert ended.error.startswith("start cancelled by alice-uuid during step playbook: the "
                                  "VMs are on; services may be partly started")


def test_cancel_is_404_unless_the_callers_action_and_409_once_ended(memory):
    other = "00000000-0000-0000-0000-0000000000aa"
    add_instance(memory)
    add_instance(memory, instance_id=other)
    action_id = request(memory).action.id
    with pytest.raises(InstanceNotFound):
        cancel(memory, action_id, identity=BOB)
    for instance_id, wrong in ((other, action_id), (INSTANCE_ID, "nope")):
        with pytest.raises(ActionNotFound):
            cancel(memory, wrong, instance_id=instance_id)
    with memory() as uow:
        uow.actions.finish(action_id, None, ActionState.SUCCEEDED, None, utcnow())
        uow.commit()
    with pytest.raises(ActionConflict) as info:
        cancel(memory, action_id)
    assert info.value.detail == "The action has already ended (succeeded)."


# --- leaving slaves out of a start, and bringing them back ----------------------------------


def add_cluster(uow_factory, status=InstanceStatus.STOPPED, left_out=()):
    with uow_factory() as uow:
        uow.instances.add(Instance(
            id=INSTANCE_ID, owner="alice-uuid", name="three", status=status,
            services=("hdfs", "kafka"), left_out_hosts=left_out,
            hosts=(Host("1", "m", HostRole.MASTER, "127.0.0.2"),
                   Host("2", "s1", HostRole.SLAVE, "127.0.0.3"),
                   Host("3", "s2", HostRole.SLAVE, "127.0.0.4"))))
        uow.commit()


@pytest.mark.parametrize(("raw", "excluded"), [
    (None, ()), ("", ()), ([], ()), ("s1", ("s1",)), (" s1 , ", ("s1",)), (["s1"], ("s1",)),
    ("s2,s1", ("s1", "s2")), (["s2", "s1,s2", ""], ("s1", "s2")),
])
def test_exclude_names_slaves_in_the_instances_order(memory, raw, excluded):
    add_cluster(memory)
    accepted = services.request_action(memory, ALICE, INSTANCE_ID, "start",
                                       encrypt_token=lambda: "c", raw_exclude=raw)
    assert accepted.action.excluded_hosts == excluded
    with memory() as uow:
        assert uow.actions.get(accepted.action.id).excluded_hosts == excluded


@pytest.mark.parametrize(("status", "action", "raw", "detail"), [
    (InstanceStatus.STOPPED, "start", "nope", "exclude: 'nope' is not a host of this lambda "
                                              "instance."),
    (InstanceStatus.STOPPED, "start", "s1,M", "exclude: 'M' is not a host of this lambda "
                                              "instance."),
    (InstanceStatus.STOPPED, "start", ["s1", "m"], "exclude: m is the master; a lambda "
     "instance cannot start without it (only slaves can be left out)."),
    (InstanceStatus.STARTED, "stop", "s1", "exclude applies to start only."),
    # 400 before 409, as for the action parameter.
    (InstanceStatus.STOPPING, "start", "m", "exclude: m is the master; a lambda instance "
     "cannot start without it (only slaves can be left out)."),
    (InstanceStatus.STOPPED, "start", {"s1": True}, services.EXCLUDE_SHAPE),
    (InstanceStatus.STOPPED, "start", ["s1", 2], services.EXCLUDE_SHAPE),
    (InstanceStatus.STOPPED, "start", [["s1"]], services.EXCLUDE_SHAPE),
    (InstanceStatus.STOPPED, "start", 7, services.EXCLUDE_SHAPE),
    # A hostile name is echoed cut short, on one line.
    (InstanceStatus.STOPPED, "start", "x\n" * 100,
     "exclude: '" + "x\\x0a" * 40 + "' is not a host of this lambda instance."),
])
def test_a_bad_exclude_is_a_400_naming_what_is_wrong(memory, status, action, raw, detail):
    add_cluster(memory, status=status)
    with pytest.raises(InvalidParameter) as info:
        services.request_action(memory, ALICE, INSTANCE_ID, action,
                                encrypt_token=lambda: "c", raw_exclude=raw)
    assert str(info.value) == detail
    with memory() as uow:
        assert uow.instances.get(INSTANCE_ID).status is status  # nothing recorded


def test_a_started_instance_with_hosts_left_out_may_start_to_bring_them_back(memory):
    add_cluster(memory, status=InstanceStatus.STARTED, left_out=("s1", "s2"))
    for raw, detail in [
            ("s1,s2", "The specified lambda instance is already started."),  # nothing back
            ("m", "exclude: m is the master; a lambda instance cannot start without it (only "
                  "slaves can be left out)."),
    ]:
        with pytest.raises((ActionConflict, InvalidParameter), match=re.escape(detail)):
            services.request_action(memory, ALICE, INSTANCE_ID, "start",
                                    encrypt_token=lambda: "c", raw_exclude=raw)
    accepted = services.request_action(memory, ALICE, INSTANCE_ID, "start",
                                       encrypt_token=lambda: "c", raw_exclude="s2")
    assert accepted.action.excluded_hosts == ("s2",)  # s1 comes back, s2 stays out
    with memory() as uow:
        assert uow.instances.get(INSTANCE_ID).status is InstanceStatus.STARTING


def test_a_started_instance_cannot_leave_out_a_host_that_runs(memory):
    add_cluster(memory, status=InstanceStatus.STARTED, left_out=("s1",))
    with pytest.raises(ActionConflict) as info:
        services.request_action(memory, ALICE, INSTANCE_ID, "start",
                                encrypt_token=lambda: "c", raw_exclude="s1,s2")
    assert info.value.detail == ("Can't leave out s2: it runs in the started lambda instance "
                                 "(stop the instance first).")


def test_excluded_and_left_out_hosts_are_stored(uow_factory):
    """On SQLite and PostgreSQL: the action's excluded hosts reach the worker's claim, and
    the instance's left-out hosts are read back."""
    from api.domain.clock import utcnow

    add_cluster(uow_factory)
    accepted = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                       encrypt_token=lambda: "c", raw_exclude=["s2"])
    with uow_factory() as uow:
        claim = uow.actions.claim(accepted.action.id, "w", utcnow(), 30)
        uow.instances.set_left_out_hosts(INSTANCE_ID, claim.excluded_hosts)
        uow.commit()
    assert claim.excluded_hosts == ("s2",)
    with uow_factory(readonly=True) as uow:
        assert uow.instances.get(INSTANCE_ID).left_out_hosts == ("s2",)
        assert uow.instances.list("alice-uuid", None, 0)[0].left_out_hosts == ("s2",)
        assert uow.actions.history(INSTANCE_ID, 10, 0)[0].excluded_hosts == ("s2",)
