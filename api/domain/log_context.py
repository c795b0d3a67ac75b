"""Whom a log line is about: the request or the action the code runs for.

Two context variables, set by the request middleware (``request_id``) and at the entry of
``Orchestrator.run`` (``action_id``); the log formatter (``api.logs``) puts them on every
line. A context variable follows the code through calls and awaits, but a new thread
starts with an empty context: hand it the caller's with ``carry``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lambda_request_id", default=None)
action_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lambda_action_id", default=None)


@contextlib.contextmanager
def about_action(action: str) -> Iterator[None]:
    """Log lines in this block (and in threads it ``carry``s to) name ``action``."""
    token = action_id.set(action)
    try:
        yield
    finally:
        action_id.reset(token)


def carry(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` to run in another thread with the context of the caller of ``carry``.

    Each call runs in a copy of that context: one context cannot be entered by two
    threads at once, and a pool may run the calls side by side."""
    context = contextvars.copy_context()

    def run(*args, **kwargs) -> T:
        return context.copy().run(fn, *args, **kwargs)
    return run
