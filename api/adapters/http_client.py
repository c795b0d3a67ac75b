"""A small JSON-over-HTTP client on a pooled ``urllib3.PoolManager``, with retries.

Shared by the identity and compute adapters. urllib3's ``Retry`` retries connection errors,
read timeouts and 5xx answers with exponential backoff, for the methods it is told are safe
to repeat (GET unless the caller names others); every other status is the caller's to read.
urllib3 reads no proxy variables from the environment, so nothing here does either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0  # seconds; no single wait between retries is longer


class TransportError(Exception):
    """No HTTP answer came back (connection refused, reset, timed out), even after retries."""


@dataclass(frozen=True)
class JsonResponse:
    status: int
    body: Any  # the parsed JSON document, or None when the body is empty or not JSON
    text: str

    @property
    def is_json(self) -> bool:
        return self.body is not None

    def fault(self) -> tuple[str | None, str]:
        """(name, message) of a ``{name: {"message": ...}}`` fault body (Synnefo, OpenStack)."""
        if isinstance(self.body, dict) and len(self.body) == 1:
            ((name, detail),) = self.body.items()
            if isinstance(detail, dict):
                return name, str(detail.get("message") or "")
        return None, self.text[:200]


class JsonHttpClient:
    """Thread-safe; one instance (and its connection pool) can serve many callers."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        retry_methods: Iterable[str] = ("GET",),
        pool_maxsize: int = 32,
    ):
        self.timeout = timeout
        self.retry = Retry(
            total=retries,
            # A connect error is retried for any method: nothing reached the server.
            allowed_methods=frozenset(m.upper() for m in retry_methods),
            status_forcelist=frozenset(range(500, 600)),
            backoff_factor=backoff,
            backoff_max=MAX_BACKOFF,
            raise_on_status=False,  # the last 5xx goes back to the caller, who reads it
            # Waits stay bounded by backoff_max: a server's Retry-After could be hours.
            respect_retry_after_header=False,
        )
        self._pool = urllib3.PoolManager(
            num_pools=16,
            maxsize=pool_maxsize,
            block=False,
            retries=self.retry,
            timeout=urllib3.Timeout(total=timeout),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> JsonResponse:
        """Send one request (retried as ``self.retry`` says); return the last answer.

        Raises ``TransportError`` when no attempt got an HTTP answer at all.
        """
        send_headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send_headers["Content-Type"] = "application/json"
        try:
            raw = self._pool.request(method, url, body=payload, headers=send_headers,
                                     redirect=False)
        except Urllib3Error as exc:
            log.debug("%s %s: %r", method, url, exc)
            raise TransportError(f"{method} {url}: {transport_reason(exc)}") from exc
        return _parse(raw.status, raw.data)

    def close(self) -> None:
        self._pool.clear()


def transport_reason(exc: Urllib3Error) -> str:
    """Why no answer came, in words: urllib3's own text holds reprs of its connection
    objects, which mean nothing to whoever reads an action's error."""
    reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the last error
    if isinstance(reason, NameResolutionError):
        return "the host name does not resolve"
    if isinstance(reason, NewConnectionError):  # before its base, ConnectTimeoutError
        strerror = getattr(reason.__cause__, "strerror", None)
        return f"cannot connect ({strerror.lower()})" if strerror else "cannot connect"
    if isinstance(reason, ConnectTimeoutError):
        return "connecting timed out"
    if isinstance(reason, ReadTimeoutError):
        return "no answer within the timeout"
    if isinstance(reason, SSLError):
        return "the TLS handshake failed"
    if isinstance(reason, ProtocolError):
        return "the connection broke before an answer came"
    return "no answer (transport error)"


def _parse(status: int, data: bytes) -> JsonResponse:
    text = data.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return JsonResponse(status=status, body=body, text=text)
