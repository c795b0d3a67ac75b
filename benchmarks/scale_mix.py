"""The scale run's load: many users over real sockets, each a thread with its own session.

Every ``wave_every`` seconds all users fire a burst of start/stop requests at once (a
morning's starts, an evening's stops); between waves each user reads: its instances'
details, its actions' resources (which is how it learns an action ended), an action's
event stream (a few events, then it hangs up), its list a page at a time, and now and
then a single start or stop. Each user keeps its share of ``max_outstanding`` in flight:
when it learns one of its actions ended it starts or stops another, so the workers face a
backlog whenever the cap exceeds their threads. How many actions may be outstanding at
once is capped, so the offered load stays the same whatever the number of workers and
the queue does not grow without bound.

Cancels: for each accepted action the user decides once (``cancel_share``, its seeded
random numbers) whether it will cancel it, and when: a random time within the action's
expected length (``action_seconds``); its loop sends the cancel when due, if it has not
seen the action end by then. The client fails over to the next API process when one does
not answer a connection, as a load balancer would.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field

import requests

from benchmarks.scale_seed import User

ENDED = ("succeeded", "failed", "cancelled")
TARGET = {"STARTED": "stop", "STOPPED": "start"}


@dataclass
class Record:
    t: float  # time.monotonic() at the request's start
    kind: str  # accept | reject | details | action | events | list | cancel
    status: int  # HTTP status; 0: no answer
    ms: float
    phase: int


@dataclass
class Accepted:
    action_id: str
    instance_id: str
    kind: str
    t: float
    phase: int
    ended: str | None = None
    cancel_at: float | None = None  # time.monotonic() at which its user cancels it


@dataclass
class MixConfig:
    wave_every: float = 20.0
    burst: tuple[int, int] = (2, 6)  # instances per user per wave
    think: float = 1.0  # mean seconds between a user's reads
    max_outstanding: int = 64
    cancel_share: float = 0.02  # of the accepted actions, cancelled by their user
    # The expected length of an action, by kind (a cancel falls within it).
    action_seconds: dict[str, float] = field(
        default_factory=lambda: {"start": 10.0, "stop": 4.0})
    seed: int = 24


class FailoverClient:
    """One user's HTTP client over every API process: a request that cannot connect to one
    goes to the next (a refused connection never reached the server, so even a POST may)."""

    def __init__(self, bases: list[str], token: str, first: int):
        self.bases = bases
        self.first = first
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        last: Exception | None = None
        for n in range(len(self.bases)):
            base = self.bases[(self.first + n) % len(self.bases)]
            try:
                return self.session.request(method, base + path, **kwargs)
            except requests.ConnectionError as exc:
                last = exc
                if not _never_connected(exc) and method != "GET":
                    raise  # it may have reached the server: not sent twice
        raise last

    def close(self) -> None:
        self.session.close()


def _never_connected(exc: requests.ConnectionError) -> bool:
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text


def read_sse(resp: requests.Response, events: int, seconds: float) -> int:
    """Read up to ``events`` events of a stream, for at most ``seconds``; returns how many."""
    seen, buffer, deadline = 0, b"", time.monotonic() + seconds
    for chunk in resp.iter_content(chunk_size=None):
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            if any(line.startswith(b"data:") for line in raw.split(b"\n")):
                seen += 1
        if seen >= events or time.monotonic() >= deadline:
            break
    return seen


class Mix:
    """The users' threads; ``phase`` tags what they record; ``stop()`` ends them."""

    def __init__(self, bases: list[str], users: list[User], instances_of: dict[str, list[str]],
                 initial: dict[str, str], config: MixConfig):
        self.bases = bases
        self.users = users
        self.instances_of = instances_of  # user id -> instance ids
        self.status = dict(initial)  # instance id -> last status seen
        self.config = config
        self.records: list[Record] = []
        self.accepted: dict[str, Accepted] = {}
        self.outstanding: dict[str, Accepted] = {}  # instance id -> its action in flight
        self.phase = 0
        self.accepting = True
        # Each user's share of the cap, kept in flight between the bursts.
        self.per_user = max(1, math.ceil(config.max_outstanding / max(len(users), 1)))
        self.cancels_planned: list[str] = []  # action ids whose user will cancel them
        self.cancels_sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wave = 0
        self._threads: list[threading.Thread] = []

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        for n, user in enumerate(self.users):
            thread = threading.Thread(target=self._user, args=(n, user), name=f"user-{n}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        waves = threading.Thread(target=self._waves, name="waves", daemon=True)
        waves.start()
        self._threads.append(waves)

    def stop_accepting(self) -> None:
        self.accepting = False

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _waves(self) -> None:
        while not self._stop.wait(self.config.wave_every):
            self._wave += 1

    def _user(self, n: int, user: User) -> None:
        rng = random.Random(self.config.seed * 10_000 + n)
        client = FailoverClient(self.bases, user.token, first=n % len(self.bases))
        mine = self.instances_of.get(user.id, [])
        wave = self._wave
        try:
            while not self._stop.is_set():
                if self._wave != wave:
                    wave = self._wave
                    self._burst(client, rng, mine)
                self._cancel_due(client, mine)
                self._one_read(client, rng, user, mine)
                self._keep_busy(client, rng, mine)
                self._stop.wait(rng.expovariate(1 / self.config.think))
        finally:
            client.close()

    # -- what a user does ----------------------------------------------------------------

    def _timed(self, kind: str, call) -> requests.Response | None:
        began = time.monotonic()
        resp, status = None, 0
        try:
            resp = call()
            status = resp.status_code
        except requests.RequestException:
            pass
        ms = (time.monotonic() - began) * 1000
        if kind == "accept" and status != 202:
            kind = "reject"
        with self._lock:
            self.records.append(Record(began, kind, status, ms, self.phase))
        return resp

    def _burst(self, client: FailoverClient, rng: random.Random, mine: list[str]) -> None:
        count = rng.randint(*self.config.burst)
        for instance_id in rng.sample(mine, min(count, len(mine))):
            self._act(client, rng, instance_id)

    def _act(self, client: FailoverClient, rng: random.Random, instance_id: str) -> None:
        with self._lock:
            if (not self.accepting or instance_id in self.outstanding
                    or len(self.outstanding) >= self.config.max_outstanding):
                return
            status = self.status.get(instance_id, "STOPPED")
        action = TARGET.get(status) or rng.choice(("start", "stop"))
        path = f"/api/lambda-instances/{instance_id}/"
        resp = self._timed("accept", lambda: client.request("POST", path,
                                                            data={"action": action}))
        if resp is None:
            return
        if resp.status_code == 202:
            action_id = resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
            accepted = Accepted(action_id, instance_id, action, time.monotonic(), self.phase)
            if rng.random() < self.config.cancel_share:
                length = self.config.action_seconds.get(action, 0.0)
                accepted.cancel_at = accepted.t + rng.uniform(0.0, length)
            with self._lock:
                if accepted.cancel_at is not None:
                    self.cancels_planned.append(action_id)
                self.accepted[action_id] = accepted
                self.outstanding[instance_id] = accepted
                self.status[instance_id] = "STARTING" if action == "start" else "STOPPING"
        elif resp.status_code == 409:
            self._details(client, instance_id)

    def _details(self, client: FailoverClient, instance_id: str) -> None:
        resp = self._timed("details", lambda: client.request(
            "GET", f"/api/lambda-instances/{instance_id}/", params={"filter": "status"}))
        if resp is not None and resp.status_code == 200:
            with contextlib.suppress(ValueError, KeyError, IndexError):
                status = resp.json()["data"][0]["status"]["message"]
                with self._lock:
                    self.status[instance_id] = status

    def _mine_outstanding(self, mine: list[str]) -> list[Accepted]:
        with self._lock:
            return [self.outstanding[i] for i in mine if i in self.outstanding]

    def _one_read(self, client: FailoverClient, rng: random.Random, user: User,
                  mine: list[str]) -> None:
        pending = self._mine_outstanding(mine)
        roll = rng.random()
        if pending and roll < 0.35:
            self._action(client, rng.choice(pending))
        elif roll < 0.55:
            self._details(client, rng.choice(mine))
        elif roll < 0.70:
            limit = rng.choice((5, 10, 20))
            offset = rng.randrange(0, max(len(mine), 1))
            self._timed("list", lambda: client.request(
                "GET", "/api/lambda-instances/", params={"limit": limit, "offset": offset}))
        elif roll < 0.80:
            self._events(client, rng, pending)
        elif roll < 0.92:
            self._act(client, rng, rng.choice(mine))
        elif pending:
            self._action(client, rng.choice(pending))

    def _keep_busy(self, client: FailoverClient, rng: random.Random, mine: list[str]) -> None:
        """Start or stop another instance for each of the user's actions seen ended, up to
        its share of the cap."""
        with self._lock:
            idle = [i for i in mine if i not in self.outstanding]
        missing = self.per_user - (len(mine) - len(idle))
        for instance_id in rng.sample(idle, max(min(missing, len(idle)), 0)):
            self._act(client, rng, instance_id)

    def _cancel_due(self, client: FailoverClient, mine: list[str]) -> None:
        """Send the cancels the user planned whose time has come (once each)."""
        now = time.monotonic()
        for target in self._mine_outstanding(mine):
            if target.cancel_at is None or target.cancel_at > now:
                continue
            target.cancel_at = None
            with self._lock:
                self.cancels_sent += 1
            self._timed("cancel", lambda t=target: client.request(
                "POST", f"/api/lambda-instances/{t.instance_id}/actions/"
                        f"{t.action_id}/cancel"))

    def _action(self, client: FailoverClient, accepted: Accepted) -> None:
        resp = self._timed("action", lambda: client.request(
            "GET", f"/api/lambda-instances/{accepted.instance_id}/actions/"
                   f"{accepted.action_id}"))
        if resp is None or resp.status_code != 200:
            return
        with contextlib.suppress(ValueError, KeyError):
            data = resp.json()["data"]
            if data["state"] in ENDED:
                with self._lock:
                    accepted.ended = data["state"]
                    if self.outstanding.get(accepted.instance_id) is accepted:
                        del self.outstanding[accepted.instance_id]
                    self.status[accepted.instance_id] = data["instance"]["status"]["message"]

    def _events(self, client: FailoverClient, rng: random.Random,
                pending: list[Accepted]) -> None:
        with self._lock:
            candidates = pending or list(self.accepted.values())[-50:]
        if not candidates:
            return
        target = rng.choice(candidates)
        path = f"/api/lambda-instances/{target.instance_id}/actions/{target.action_id}/events"

        def stream():
            resp = client.request("GET", path, stream=True, timeout=(5, 10))
            with contextlib.suppress(requests.RequestException):
                if resp.status_code == 200:
                    read_sse(resp, events=3, seconds=5)
            resp.close()
            return resp
        self._timed("events", stream)

    # -- results -------------------------------------------------------------------------

    def summary(self) -> dict:
        with self._lock:
            records = list(self.records)
        by: dict[tuple[str, int], int] = {}
        for r in records:
            by[(r.kind, r.status)] = by.get((r.kind, r.status), 0) + 1
        return {f"{k} {s}": n for (k, s), n in sorted(by.items())}


@dataclass
class Phase:
    workers: int
    began: float = 0.0
    ended: float = 0.0
    events: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        line = f"  [{time.strftime('%H:%M:%S')}] {what}"
        self.events.append(line)
        print(line, flush=True)


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
