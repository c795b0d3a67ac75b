"""The action repository's events on real databases (SQLite and PostgreSQL): each writer
appends its events in its own transaction, numbered 1, 2, 3... per action; appenders of
one action take turns, so seqs never collide and never commit out of order; a read-only
unit reads the action and its events as of one instant; events go with their action."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from api.adapters.db.tables import action_events
from api.domain.clock import utcnow
from api.domain.model import ActionEventType, ActionState, StepName, StepState, TaskResult
from tests.integration.test_unit_of_work import CREATED, make_action, seeded  # noqa: F401


def events_of(uow_factory, action_id: str, after: int = 0, limit: int = 1000):
    with uow_factory(readonly=True) as uow:
        return uow.actions.events(action_id, after, limit)


def test_each_writer_appends_its_events_in_its_transaction(seeded):  # noqa: F811
    t0 = utcnow()
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        first = uow.actions.claim("a-1", "dead", CREATED, 0)  # a lease that has expired
        uow.actions.start_step("a-1", first.attempt, StepName.POWER_ON, t0)
        uow.commit()
    with seeded() as uow:  # attempt 2 closes the step attempt 1 left running
        second = uow.actions.claim("a-1", "w", t0 + timedelta(seconds=2), 60)
        uow.actions.add_step("a-1", second.attempt, StepName.WAIT_SSH, StepState.SKIPPED, t0,
                             "hosts are local")
        step = uow.actions.start_step("a-1", second.attempt, StepName.PLAYBOOK, t0)
        uow.actions.add_tasks("a-1", second.attempt, [
            TaskResult(host="m", task="t1", status="ok", role="r", play="p", duration=0.1),
            TaskResult(host="s", task="t1", status="failed", message="x" * 5000)], t0)
        uow.actions.end_step(step, StepState.FAILED, t0 + timedelta(seconds=1), "boom")
        uow.actions.release("a-1", "w", t0)
        uow.commit()
    with seeded() as uow:  # left without a commit: neither the claim nor its events count
        uow.actions.claim("a-1", "w2", t0, 60)
    with seeded() as uow:
        uow.actions.claim("a-1", "w3", t0, 60)
        assert uow.actions.append_event("a-1", ActionEventType.STATE, {"note": "n"}, t0) == 13
        assert uow.actions.append_event("nope", ActionEventType.STATE, {}, t0) is None
        assert uow.actions.finish("a-1", "w3", ActionState.FAILED, "it broke", t0)
        assert not uow.actions.finish("a-1", "w3", ActionState.FAILED, "again", t0)
        uow.commit()

    events = events_of(seeded, "a-1")
    assert [e.seq for e in events] == list(range(1, 15))
    assert [(e.type.value, e.attempt, e.data) for e in events] == [
        ("state", None, {"state": "accepted", "kind": "start", "requested_by": "u1"}),
        ("state", 1, {"state": "running"}),
        ("step", 1, {"name": "power_on", "state": "running"}),
        ("step", 1, {"name": "power_on", "state": "failed", "duration": 2.0,
                     "message": "interrupted; resumed as attempt 2", "interrupted": True}),
        ("state", 2, {"state": "running"}),
        ("step", 2, {"name": "wait_ssh", "state": "skipped", "message": "hosts are local",
                     "duration": 0.0}),
        ("step", 2, {"name": "playbook", "state": "running"}),
        ("task", 2, {"host": "m", "task": "t1", "status": "ok", "role": "r", "play": "p",
                     "message": None, "duration": 0.1}),
        ("task", 2, {"host": "s", "task": "t1", "status": "failed", "role": None,
                     "play": None, "message": "x" * 2000, "duration": None}),
        ("step", 2, {"name": "playbook", "state": "failed", "message": "boom",
                     "duration": 1.0}),
        ("state", 2, {"state": "running", "handed_back": True, "message": (
            "handed back unfinished: its worker is stopping; the next worker resumes it "
            "as the same attempt")}),
        ("state", 2, {"state": "running"}),
        ("state", None, {"note": "n"}),
        ("state", 2, {"state": "failed", "error": "it broke"}),
    ]
    assert events[0].at == CREATED and events[-1].at == t0
    with seeded(readonly=True) as uow:
        assert uow.actions.get("a-1").last_event == 14
        assert uow.actions.summary("a-1", owner="u1").last_event == 14
        assert uow.actions.summary("a-1", owner="someone else") is None
    assert [e.seq for e in events_of(seeded, "a-1", after=4, limit=3)] == [5, 6, 7]
    assert events_of(seeded, "a-1", after=14) == []


def test_appenders_of_one_action_take_turns(seeded):  # noqa: F811
    """Two connections append to one action at once: the second waits for the first's
    commit, then numbers after it. With MAX(seq)+1 or a sequence, it would take a seq of
    its own at once and could commit it first: a reader would see 3 before 2, and a client
    that resumed after 3 would never get 2."""
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.commit()
    second_done = threading.Event()
    taken = {}

    def second_appender():
        with seeded() as uow:
            taken["second"] = uow.actions.append_event("a-1", ActionEventType.STATE,
                                                       {"n": 2}, utcnow())
            uow.commit()
        second_done.set()

    with seeded() as first:
        taken["first"] = first.actions.append_event("a-1", ActionEventType.STATE, {"n": 1},
                                                    utcnow())
        thread = threading.Thread(target=second_appender)
        thread.start()
        # While the first holds its seq uncommitted, the second cannot take one.
        assert not second_done.wait(0.5)
        first.commit()
    thread.join(30)
    assert taken == {"first": 2, "second": 3}
    assert [(e.seq, e.data) for e in events_of(seeded, "a-1", after=1)] == [
        (2, {"n": 1}), (3, {"n": 2})]


def test_many_concurrent_appenders_get_distinct_consecutive_seqs(seeded):  # noqa: F811
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.commit()
    writers, rounds = 6, 5
    barrier = threading.Barrier(writers)
    errors = []

    def append(n: int) -> None:
        barrier.wait()
        try:
            for k in range(rounds):
                with seeded() as uow:
                    uow.actions.add_tasks("a-1", 1, [
                        TaskResult(host=f"h{n}", task=f"t{k}", status="ok"),
                        TaskResult(host=f"h{n}", task=f"t{k}b", status="ok")], utcnow())
                    uow.commit()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    events = events_of(seeded, "a-1", after=1)
    assert [e.seq for e in events] == list(range(2, 2 + writers * rounds * 2))
    for n in range(writers):  # each writer's events in its own order, each batch together
        mine = [e for e in events if e.data["host"] == f"h{n}"]
        assert [e.data["task"] for e in mine] == [
            t for k in range(rounds) for t in (f"t{k}", f"t{k}b")]
        assert all(b.seq == a.seq + 1 for a, b in zip(mine[::2], mine[1::2], strict=True))


def test_a_readonly_unit_reads_the_action_and_its_events_as_of_one_instant(seeded):  # noqa: F811
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.commit()
    with seeded(readonly=True) as reader:
        assert reader.actions.summary("a-1").last_event == 1
        with seeded() as writer:
            writer.actions.append_event("a-1", ActionEventType.STATE, {}, utcnow())
            writer.commit()
        # Committed meanwhile, and not seen: the events agree with the last_event read.
        assert [e.seq for e in reader.actions.events("a-1", 0, 10)] == [1]
    assert [e.seq for e in events_of(seeded, "a-1")] == [1, 2]


def test_events_go_with_their_action(seeded):  # noqa: F811
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.actions.append_event("a-1", ActionEventType.STATE, {}, utcnow())
        uow.commit()
    with seeded() as uow:
        uow.instances.delete("i-1")
        uow.commit()
    with seeded.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(action_events)).scalar_one() == 0
