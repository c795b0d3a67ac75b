"""A small JSON-over-HTTP client on a pooled ``urllib3.PoolManager``, with retries.

Shared by the identity and compute adapters. It retries connection errors, timeouts and 5xx
answers with exponential backoff and leaves the meaning of every other status to the caller.
urllib3 reads no proxy variables from the environment, so nothing here does either.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

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
        sleep: Callable[[float], None] = time.sleep,
        pool_maxsize: int = 32,
    ):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._pool = urllib3.PoolManager(
            num_pools=16,
            maxsize=pool_maxsize,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> JsonResponse:
        """Send one request, retrying transport failures and 5xx; return the last answer.

        Raises ``TransportError`` when no attempt got an HTTP answer at all.
        """
        retries = self.retries if retries is None else retries
        send_headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                raw = self._pool.request(
                    method,
                    url,
                    body=payload,
                    headers=send_headers,
                    redirect=False,
                    preload_content=True,
                )
            except Urllib3Error as exc:
                if attempt >= retries:
                    raise TransportError(f"{method} {url}: {exc}") from exc
                log.info(
                    "%s %s failed (%s); retry %s of %s",
                    method,
                    url,
                    type(exc).__name__,
                    attempt + 1,
                    retries,
                )
            else:
                response = _parse(raw.status, raw.data)
                if response.status < 500 or attempt >= retries:
                    return response
                log.info(
                    "%s %s answered %s; retry %s of %s",
                    method,
                    url,
                    response.status,
                    attempt + 1,
                    retries,
                )
            self._sleep(min(MAX_BACKOFF, self.backoff * (2**attempt)))
            attempt += 1

    def close(self) -> None:
        self._pool.clear()


def _parse(status: int, data: bytes) -> JsonResponse:
    text = data.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return JsonResponse(status=status, body=body, text=text)
