"""Synnefo Astakos identity client that a flood of made-up tokens cannot wear down.

- Two bounded caches (``cachetools.TTLCache``, least recently used out first), keyed by the
  sha256 of the token so no raw token is kept beyond the call: valid tokens for a minute,
  invalid ones for a few seconds. They are separate so that random tokens, which only ever
  land in the negative cache, never push a valid token out.
- Single flight: concurrent checks of one uncached token make one upstream call.
- A cap on concurrent upstream calls: a check that finds no free slot within a short wait
  is refused (``IdentityUnavailable``) instead of queueing behind a slow service.
- An outage breaker: after a few upstream failures in a row, unknown tokens are refused at
  once for a few seconds; then one check goes through as a probe. Cached tokens keep working.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from cachetools import TTLCache

from api.adapters.http_client import JsonHttpClient, JsonResponse, TransportError
from api.domain.errors import IdentityUnavailable, InvalidToken
from api.domain.ports import NO_METRICS, Identity, Metrics

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 1024  # Astakos tokens are ~43 characters; anything huge is not a token
_INVALID_STATUSES = (400, 401, 404)


def token_key(token: str) -> str:
    """What the cache (and anything else that must tell tokens apart) keeps instead of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _well_formed(token) -> bool:
    # Of the whitespace characters only the ASCII space is printable (the others are in
    # Unicode's Cc, Zs, Zl or Zp), so one `in` after isprintable() rejects them all; a
    # per-character isspace() scan cost more than the cached token check it guards.
    return (
        isinstance(token, str)
        and 0 < len(token) <= MAX_TOKEN_LENGTH
        and token.isprintable()
        and " " not in token
    )


def parse_expires(value) -> datetime | None:
    """Astakos' ``token.expires`` (ISO 8601, e.g. 2013-06-19T15:23:59.975572+00:00)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def identity_from_access(document) -> Identity:
    """Read an Identity from the body of a 200 to ``POST /tokens``; ValueError if malformed."""
    try:
        access = document["access"]
        user = access["user"]
        user_id = user["id"]
        catalog = access.get("serviceCatalog") or []
        token = access.get("token") or {}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"no access.user.id in the answer ({exc})") from exc
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("access.user.id is not a string")
    compute_url = None
    for service in catalog if isinstance(catalog, list) else []:
        if isinstance(service, dict) and service.get("type") == "compute":
            endpoints = [e for e in service.get("endpoints") or [] if isinstance(e, dict)]
            compute_url = next((e["publicURL"] for e in endpoints if e.get("publicURL")), None)
            if compute_url:
                break
    return Identity(
        user_id=user_id,
        user_name=str(user.get("name") or user_id),
        compute_url=compute_url,
        expires=parse_expires(token.get("expires")),
    )


@dataclass(frozen=True)
class _Valid:
    identity: Identity
    valid_until: float  # in clock() time; sooner than the cache's TTL for an expiring token


class _Flight:
    """One upstream check in progress; followers wait for the leader's outcome."""

    def __init__(self):
        self.done = threading.Event()
        self.identity: Identity | None = None
        self.error: Exception | None = None


def _copy(error: Exception) -> Exception:
    """A fresh exception like ``error`` for a follower to raise (one exception object raised
    in several threads would share, and keep rewriting, one traceback)."""
    if isinstance(error, IdentityUnavailable):
        return IdentityUnavailable(str(error), retry_after=error.retry_after)
    return type(error)(str(error))


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class AstakosIdentity:
    """``IdentityPort`` over Astakos' ``POST {auth_url}/tokens``."""

    def __init__(
        self,
        auth_url: str,
        *,
        cache_ttl: float = 60.0,
        timeout: float = 10.0,
        retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
        negative_max_entries: int = 10_000,
        max_concurrent: int = 8,
        slot_wait: float = 0.5,
        outage_failures: int = 3,
        outage_seconds: float = 5.0,
        backoff: float = 0.2,
        http: JsonHttpClient | None = None,
        metrics: Metrics = NO_METRICS,
    ):
        self.tokens_url = auth_url.rstrip("/") + "/tokens"
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.max_concurrent = max(max_concurrent, 1)
        self.slot_wait = slot_wait
        self.outage_failures = outage_failures  # 0: never refuse before asking
        self.outage_seconds = outage_seconds
        self._clock = clock
        self._metrics = metrics  # cache hits and misses
        # POST /tokens only reads (validates a token): repeating it is safe.
        self._http = http or JsonHttpClient(
            timeout=timeout, retries=retries, backoff=backoff, retry_methods=("POST",),
            pool_maxsize=self.max_concurrent,
        )
        self._lock = threading.Lock()  # cachetools' caches are not thread safe
        # The TTL bounds every valid entry; each also keeps its own, shorter deadline.
        self._valid: TTLCache[str, _Valid] | None = TTLCache(
            maxsize=max_entries, ttl=max(cache_ttl, 0.001), timer=clock
        ) if max_entries > 0 and cache_ttl > 0 else None
        self._invalid: TTLCache[str, bool] | None = TTLCache(
            maxsize=negative_max_entries, ttl=negative_ttl, timer=clock
        ) if negative_max_entries > 0 and negative_ttl > 0 else None
        self._flights: dict[str, _Flight] = {}
        self._slots = threading.BoundedSemaphore(self.max_concurrent)
        self._failures = 0  # upstream failures since the last answer
        self._refuse_until = 0.0  # clock() time; while ahead, unknown tokens are refused
        self._probing = False  # one check is testing whether the service is back
        self.upstream_calls = 0  # token checks sent to Astakos (retries count once)
        self.in_flight = 0  # upstream checks now in progress
        self.peak_in_flight = 0

    def cached(self, token: str) -> Identity | None:
        """The identity of a token the cache knows to be valid, without blocking on the
        service; ``InvalidToken`` for a malformed or known-invalid token; None if unknown."""
        if not _well_formed(token):
            raise InvalidToken("malformed token")
        return self._cache_answer(token_key(token))

    def authenticate(self, token: str) -> Identity:
        if not _well_formed(token):
            raise InvalidToken("malformed token")
        key = token_key(token)
        identity = self._cache_answer(key)  # the caller may not have asked the cache first
        if identity is not None:
            return identity
        with self._lock:
            identity = self._lookup(key)  # an answer that came in meanwhile
            if identity is not None:
                return identity
            self._metrics.identity_cache_lookup(hit=False)
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                probe = self._admit()  # raises while the service is known to be down
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise _copy(flight.error)
            return flight.identity
        try:
            flight.identity = self._check(token, key, probe)
            return flight.identity
        except (InvalidToken, IdentityUnavailable) as exc:
            flight.error = exc
            raise
        except Exception as exc:  # never leave followers waiting on an unexpected failure
            flight.error = IdentityUnavailable(f"identity check failed: {exc}")
            raise flight.error from exc
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def cache_clear(self) -> None:
        with self._lock:
            for cache in (self._valid, self._invalid):
                if cache is not None:
                    cache.clear()

    def cache_size(self) -> int:
        """How many valid tokens the cache holds."""
        return self._size(self._valid)

    def negative_cache_size(self) -> int:
        """How many invalid tokens the cache holds."""
        return self._size(self._invalid)

    # --- internals -------------------------------------------------------------------------

    def _size(self, cache: TTLCache | None) -> int:
        if cache is None:
            return 0
        with self._lock:
            cache.expire()
            return len(cache)

    def _cache_answer(self, key: str) -> Identity | None:
        """``_lookup``, counting an answer (a valid or a known invalid token) as a hit; a
        token the cache does not know is counted once, as a miss, when it is sent on."""
        try:
            with self._lock:
                identity = self._lookup(key)
        except InvalidToken:
            self._metrics.identity_cache_lookup(hit=True)
            raise
        if identity is not None:
            self._metrics.identity_cache_lookup(hit=True)
        return identity

    def _lookup(self, key: str) -> Identity | None:
        """(Under the lock.) A valid token's identity, InvalidToken for a known invalid
        one, None if the cache does not know it. A read makes the entry the most recent."""
        if self._valid is not None:
            entry = self._valid.get(key)
            if entry is not None:
                if self._clock() < entry.valid_until:
                    return entry.identity
                del self._valid[key]
        if self._invalid is not None and key in self._invalid:
            raise InvalidToken("invalid token (cached)")
        return None

    def _admit(self) -> bool:
        """(Under the lock.) Whether this upstream check is the outage probe; raises
        IdentityUnavailable while the service is known to be down or being probed."""
        if not self.outage_failures or self._failures < self.outage_failures:
            return False
        now = self._clock()
        if now < self._refuse_until:
            raise IdentityUnavailable("identity service down (recent checks failed)",
                                      retry_after=_whole_seconds(self._refuse_until - now))
        if self._probing:
            raise IdentityUnavailable("identity service down (a check is probing it)",
                                      retry_after=_whole_seconds(self.outage_seconds))
        self._probing = True
        return True

    def _settle(self, answered: bool, probe: bool) -> None:
        """Count an upstream check's outcome toward the outage breaker."""
        with self._lock:
            if probe:
                self._probing = False
            if answered:
                if self._failures >= self.outage_failures > 0:
                    log.warning("identity service answers again")
                self._failures = 0
                return
            self._failures += 1
            if self.outage_failures and self._failures >= self.outage_failures:
                if self._refuse_until <= self._clock():
                    log.warning("identity service down after %s failed checks: unknown "
                                "tokens are refused for %ss", self._failures,
                                self.outage_seconds)
                self._refuse_until = self._clock() + self.outage_seconds

    def _check(self, token: str, key: str, probe: bool) -> Identity:
        """Ask Astakos within the cap on concurrent upstream calls."""
        if not self._slots.acquire(timeout=self.slot_wait):
            if probe:
                with self._lock:
                    self._probing = False
            log.warning("identity checks: all %s upstream slots busy; refusing one",
                        self.max_concurrent)
            raise IdentityUnavailable("too many identity checks in flight", retry_after=1)
        answered = False
        try:
            with self._lock:
                self.upstream_calls += 1
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                identity = self._ask_astakos(token, key)
            except InvalidToken:
                answered = True
                raise
            answered = True
            return identity
        finally:
            with self._lock:
                self.in_flight -= 1
            self._slots.release()
            self._settle(answered, probe)

    def _remember_valid(self, key: str, identity: Identity, ttl: float) -> None:
        if ttl <= 0 or self._valid is None:
            return
        with self._lock:
            self._valid[key] = _Valid(identity, self._clock() + ttl)

    def _remember_invalid(self, key: str) -> None:
        if self._invalid is None:
            return
        with self._lock:
            self._invalid[key] = True

    def _ask_astakos(self, token: str, key: str) -> Identity:
        try:
            response = self._http.request(
                "POST", self.tokens_url, json_body={"auth": {"token": {"id": token}}}
            )
        except TransportError as exc:
            log.warning("identity service unreachable: %s", exc)
            raise IdentityUnavailable("identity service unreachable",
                                      retry_after=_whole_seconds(self.outage_seconds)) from exc
        return self._read_answer(response, key)

    def _read_answer(self, response: JsonResponse, key: str) -> Identity:
        if response.status in _INVALID_STATUSES:
            if response.status != 401:
                log.warning(
                    "identity service answered %s to a token check (%s); "
                    "treating the token as invalid",
                    response.status,
                    response.fault()[1],
                )
            self._remember_invalid(key)
            raise InvalidToken("invalid token")
        if response.status != 200:
            log.warning("identity service answered %s: %s", response.status, response.fault()[1])
            raise IdentityUnavailable(f"identity service answered {response.status}",
                                      retry_after=_whole_seconds(self.outage_seconds))
        try:
            identity = identity_from_access(response.body)
        except ValueError as exc:
            log.warning("identity service sent a malformed answer: %s", exc)
            raise IdentityUnavailable("identity service sent a malformed answer",
                                      retry_after=_whole_seconds(self.outage_seconds)) from exc
        ttl = self.cache_ttl
        if identity.expires is not None:
            # Never trust a cached identity past the token's own expiry.
            ttl = min(ttl, (identity.expires - datetime.now(timezone.utc)).total_seconds())
        self._remember_valid(key, identity, ttl)
        return identity


def identity_from_settings(settings, metrics: Metrics = NO_METRICS) -> AstakosIdentity:
    """The identity adapter the settings describe (``auth_url`` must be set)."""
    if not settings.auth_url:
        raise ValueError("no identity URL: set LAMBDA_AUTH_URL or a cloud in ~/.kamakirc")
    return AstakosIdentity(
        settings.auth_url,
        cache_ttl=settings.identity_cache_ttl,
        timeout=settings.http_timeout,
        retries=settings.http_retries,
        negative_ttl=settings.identity_negative_ttl,
        max_entries=settings.identity_cache_size,
        negative_max_entries=settings.identity_negative_cache_size,
        max_concurrent=settings.identity_max_concurrent,
        slot_wait=settings.identity_slot_wait,
        outage_failures=settings.identity_outage_failures,
        outage_seconds=settings.identity_outage_seconds,
        metrics=metrics,
    )
