"""The log lines: JSON fields, the request and action ids from the context (also in a
thread the code hands its context to), exception text, and no credential in any line."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
from cryptography.fernet import Fernet

from api.domain import log_context
from api.logs import make_handler, redact

TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"


@pytest.fixture
def emit():
    """Log through a handler of ``make_handler``; returns the lines it wrote."""
    made = []

    def emit(log_format: str, *args, exc_info=None, access=False, **extra) -> list[str]:
        stream = io.StringIO()
        logger = logging.getLogger(f"test.logs.{len(made)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        handler = make_handler(log_format, stream=stream, access=access)
        logger.addHandler(handler)
        made.append((logger, handler))
        logger.info(*args, exc_info=exc_info, extra=extra or None)
        return stream.getvalue().splitlines()
    yield emit
    for logger, handler in made:
        logger.removeHandler(handler)


def test_a_json_line_has_the_fields_and_the_context_ids(emit):
    token = log_context.request_id.set("req-1")
    try:
        with log_context.about_action("act-1"):
            (line,) = emit("json", "action %s: %s", "act-1", "line\nbreak")
    finally:
        log_context.request_id.reset(token)
    entry = json.loads(line)
    assert entry.keys() == {"time", "level", "logger", "message", "process", "request_id",
                            "action_id"}
    assert entry["message"] == "action act-1: line\nbreak"  # one line, escaped
    assert (entry["level"], entry["request_id"], entry["action_id"]) == ("INFO", "req-1",
                                                                         "act-1")
    assert entry["time"].endswith("Z") and entry["logger"].startswith("test.logs.")
    # Outside the context, no ids: a field is left out rather than null.
    assert "request_id" not in json.loads(emit("json", "plain")[0])


def test_a_thread_gets_the_action_id_only_when_handed_the_context(emit):
    seen = {}

    def work(name):
        seen[name] = log_context.action_id.get()

    with log_context.about_action("act-2"):
        bare = threading.Thread(target=work, args=("bare",))
        carried = threading.Thread(target=log_context.carry(work), args=("carried",))
        for thread in (bare, carried):
            thread.start()
            thread.join()
    assert seen == {"bare": None, "carried": "act-2"}


def test_an_exception_goes_with_its_text(emit):
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        (line,) = emit("json", "it failed", exc_info=exc)
    entry = json.loads(line)
    assert entry["message"] == "it failed"
    assert "Traceback" in entry["exception"] and "RuntimeError: boom" in entry["exception"]


def test_an_access_line_carries_the_request_id_it_was_given(emit):
    (line,) = emit("json", "%(r)s %(s)s", {"r": "GET / HTTP/1.1", "s": 200}, access=True,
                   request_id="from-header")
    assert json.loads(line)["request_id"] == "from-header"
    assert json.loads(line)["message"] == "GET / HTTP/1.1 200"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_credential_reaches_a_line(emit, log_format):
    fernet = Fernet(Fernet.generate_key()).encrypt(TOKEN.encode()).decode()
    try:
        raise ValueError(f"bad row: encrypted_token={fernet}")
    except ValueError as exc:
        lines = emit(log_format, "headers %s; curl -H 'Authorization:Token %s' ?token=%s",
                     {"authorization": f"Token {TOKEN}"}, TOKEN, TOKEN, exc_info=exc)
    text = "\n".join(lines)
    assert TOKEN not in text and fernet not in text and "gAAAAA" not in text
    assert text.count("[redacted]") >= 4


def test_redaction_leaves_ordinary_words_alone():
    for text in ("invalid token (cached)", "no Authorization header",
                 "token validation failed", "tokens are refused for 5s"):
        assert redact(text) == text
    assert redact(f"Token {TOKEN}") == "Token [redacted]"
    assert redact(f"Authorization: Token {TOKEN}") == "Authorization: [redacted]"
