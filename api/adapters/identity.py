"""Synnefo Astakos identity client with a TTL cache, a negative cache and single-flight.

The cache (``cachetools.TTLCache``, bounded, least recently used out first) is keyed by the
sha256 of the token, so no raw token is kept beyond the call. Concurrent checks of one
uncached token make one upstream call: the first caller asks, the others wait for its answer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from cachetools import TTLCache

from api.adapters.http_client import JsonHttpClient, JsonResponse, TransportError
from api.domain.errors import IdentityUnavailable, InvalidToken
from api.domain.ports import Identity

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
class _CacheEntry:
    identity: Identity | None  # None: the token is known to be invalid
    valid_until: float  # in clock() time; sooner than the cache's TTL for an expiring token


class _Flight:
    """One upstream check in progress; followers wait for the leader's outcome."""

    def __init__(self):
        self.done = threading.Event()
        self.identity: Identity | None = None
        self.error: Exception | None = None


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
        backoff: float = 0.2,
        http: JsonHttpClient | None = None,
    ):
        self.tokens_url = auth_url.rstrip("/") + "/tokens"
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._clock = clock
        # POST /tokens only reads (validates a token): repeating it is safe.
        self._http = http or JsonHttpClient(
            timeout=timeout, retries=retries, backoff=backoff, retry_methods=("POST",)
        )
        self._lock = threading.Lock()  # cachetools' caches are not thread safe
        # The TTL bounds every entry; each also keeps its own, shorter deadline.
        self._cache: TTLCache[str, _CacheEntry] = TTLCache(
            maxsize=max(max_entries, 1), ttl=max(cache_ttl, negative_ttl, 0.001), timer=clock
        )
        self._flights: dict[str, _Flight] = {}
        self.upstream_calls = 0  # token checks sent to Astakos (retries count once)

    def authenticate(self, token: str) -> Identity:
        if not _well_formed(token):
            raise InvalidToken("malformed token")
        key = token_key(token)
        with self._lock:
            cached = self._cached(key)
            if cached is not None:
                if cached.identity is None:
                    raise InvalidToken("invalid token (cached)")
                return cached.identity
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise type(flight.error)(str(flight.error))
            return flight.identity
        try:
            flight.identity = self._ask_astakos(token, key)
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
            self._cache.clear()

    def cache_size(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    # --- internals -------------------------------------------------------------------------

    def _cached(self, key: str) -> _CacheEntry | None:
        """The live entry for ``key`` (under the lock); a read makes it the most recent."""
        entry = self._cache.get(key)
        if entry is not None and self._clock() >= entry.valid_until:
            del self._cache[key]
            return None
        return entry

    def _remember(self, key: str, identity: Identity | None, ttl: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        with self._lock:
            self._cache[key] = _CacheEntry(identity, self._clock() + ttl)

    def _ask_astakos(self, token: str, key: str) -> Identity:
        with self._lock:
            self.upstream_calls += 1
        try:
            response = self._http.request(
                "POST", self.tokens_url, json_body={"auth": {"token": {"id": token}}}
            )
        except TransportError as exc:
            log.warning("identity service unreachable: %s", exc)
            raise IdentityUnavailable("identity service unreachable") from exc
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
            self._remember(key, None, self.negative_ttl)
            raise InvalidToken("invalid token")
        if response.status != 200:
            log.warning("identity service answered %s: %s", response.status, response.fault()[1])
            raise IdentityUnavailable(f"identity service answered {response.status}")
        try:
            identity = identity_from_access(response.body)
        except ValueError as exc:
            log.warning("identity service sent a malformed answer: %s", exc)
            raise IdentityUnavailable("identity service sent a malformed answer") from exc
        ttl = self.cache_ttl
        if identity.expires is not None:
            # Never trust a cached identity past the token's own expiry.
            ttl = min(ttl, (identity.expires - datetime.now(timezone.utc)).total_seconds())
        self._remember(key, identity, ttl)
        return identity


def identity_from_settings(settings) -> AstakosIdentity:
    """The identity adapter the settings describe (``auth_url`` must be set)."""
    if not settings.auth_url:
        raise ValueError("no identity URL: set LAMBDA_AUTH_URL or a cloud in ~/.kamakirc")
    return AstakosIdentity(
        settings.auth_url,
        cache_ttl=settings.identity_cache_ttl,
        timeout=settings.http_timeout,
        retries=settings.http_retries,
    )
