"""The one place that configures logging, for every process: the API server's parent and
workers (with hypercorn's access log) and the Celery worker.

``LAMBDA_LOG_FORMAT=text`` (the default) writes the usual lines; ``json`` writes one JSON
object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``process``, and, when known, ``request_id`` (set by the request middleware) and
``action_id`` (set by ``Orchestrator.run``), from ``api.domain.log_context``, and
``exception`` (the traceback's text).

No line may carry a credential. The code never logs one (the access line has no header
but the referer and user agent); as a second line of defence every record passes
``Redact``, which blanks ``Token <value>`` and ``Authorization`` values, ``token=<value>``
and Fernet tokens (the encrypted tokens the database holds), in the message and in the
exception's text alike.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

from api.domain import log_context
from api.settings import LOG_FORMATS, Settings

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# hypercorn's own for its access lines, kept in text mode.
ACCESS_TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
ACCESS_TEXT_DATEFMT = "[%Y-%m-%d %H:%M:%S %z]"
ACCESS_LOGGER = "hypercorn.access"
REDACTED = "[redacted]"

_CREDENTIALS = [
    # "Authorization: Token abc", "'authorization': 'Token abc'", authorization=abc
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,;}]+"),
    # "Token abc..." as a header carries it, and token=abc... in a query or a dump; the
    # value's length keeps ordinary words ("token validation") out.
    re.compile(r"(?i)((?<![a-z])token['\"]?(?:\s*[:=]\s*['\"]?|\s+))[A-Za-z0-9._~+/=-]{16,}"),
    # A Fernet token: version byte 0x80 and a timestamp, URL-safe base64.
    re.compile(r"()gAAAAA[A-Za-z0-9_-]{40,}={0,2}"),
]


def redact(text: str) -> str:
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class Redact(logging.Filter):
    """Blanks credentials in a record's message and exception text (see ``redact``).

    The message is formatted here, once, and stored formatted: every handler and
    formatter after this one sees only the redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextIds(logging.Filter):
    """Puts the request and action ids of the logging code's context on the record
    (unless the call passed its own, as the access log does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = log_context.request_id.get()
        if getattr(record, "action_id", None) is None:
            record.action_id = log_context.action_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in ("request_id", "action_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StandardStream(logging.StreamHandler):
    """Writes to ``sys.stderr`` or ``sys.stdout`` as it is at each record, not as it was
    when the handler was made (a test runner swaps them, as logging's last resort knows)."""

    def __init__(self, name: str):
        logging.Handler.__init__(self)
        self._name = name

    @property
    def stream(self):
        return getattr(sys, self._name)


def make_handler(log_format: str, *, access: bool = False, stream=None) -> logging.Handler:
    """A handler writing records in ``log_format`` to ``stream`` (default: standard
    error; standard output for ``access`` lines), with the ids and the redaction."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    if stream is None:
        handler = _StandardStream("stdout" if access else "stderr")
    else:
        handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif access:
        handler.setFormatter(logging.Formatter(ACCESS_TEXT_FORMAT, ACCESS_TEXT_DATEFMT))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextIds())
    handler.addFilter(Redact())
    handler._lambda_logging = True  # ours: replaced, never duplicated, on a second call
    return handler


def _install(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in [h for h in logger.handlers if getattr(h, "_lambda_logging", False)]:
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)


def configure_logging(settings: Settings) -> None:
    """Records of ``log_level`` and above to standard error, access lines to standard
    output, in ``log_format``. Idempotent: a forked worker or a second container of one
    process calls it again, and its handlers replace the ones it installed before
    (handlers others installed, such as a test runner's, stay)."""
    root = logging.getLogger()
    _install(root, make_handler(settings.log_format))
    root.setLevel(settings.log_level)
    # hypercorn's access lines: a logger of their own, not passed on to the root's.
    access = logging.getLogger(ACCESS_LOGGER)
    _install(access, make_handler(settings.log_format, access=True))
    access.propagate = False
    access.setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library's warning is a log line too, in the format
