"""Hostile requests through the real server (``lambda-service serve``): no spelling of a
path reaches a resource without a checked token, and nothing a client sends gets a 5xx,
a stack trace, or a body outside the contract's shape."""

from __future__ import annotations

import json
import socket

from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN

ACTION_ID = "0b1e5a5e-0000-4000-8000-000000000001"
ROUTES = ["/api/authenticate", "/api/lambda-instances",
          f"/api/lambda-instances/{DEMO_INSTANCE_ID}",
          f"/api/lambda-instances/{DEMO_INSTANCE_ID}/actions/{ACTION_ID}"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
AUTH = {"Authorization": f"Token {DEMO_TOKEN}"}


def spellings(path: str) -> list[str]:
    """Other spellings of ``path`` that a server or a framework might route alike."""
    inner = path[1:]
    return [
        path, path + "/", "/" + path, "//" + path + "//", path.replace("/", "//"),
        path.replace("/", "/./"), path + "/.", path + "/./", "/api/../" + inner,
        "/./" + inner, "/%61pi/" + inner[4:], path.replace("/", "%2F"),
        path.replace("/", "%2f", 2), path.replace("-", "%2D"), path.upper(),
        path.replace("api", "API", 1), path + "%00", path + ";x=1", path + "?x=1#f",
        path + "/%2e", path + "/%2e%2e/", path + ".", path + "%20", path + "\\",
        path.replace("/", "\\"), "/./" + inner + "/..", path + "/..;/",
        "http://127.0.0.1" + path, "http://example.org//" + inner,
    ]


def send(product, method: str, target: str, headers=None, body: bytes | None = None,
         timeout: float = 20) -> tuple[int, bytes]:
    """One request over a raw socket, ``target`` and headers byte for byte as given (no
    client normalises or refuses them); the status and the body."""
    host, port = product.base.removeprefix("http://").split(":")
    headers = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
    if body is not None and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("utf-8", "surrogateescape") + (body or b""))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


def assert_contract_shaped(status: int, body: bytes, *allowed: int) -> dict:
    """No 5xx, one of ``allowed`` (if given), no stack trace, the contract's error shape.

    The one answer without a body: the HTTP parser's own 400 for a request it cannot
    read (raw non-ASCII or control bytes on the request line, a malformed chunk).
    """
    assert status < 500, (status, body[:300])
    assert b"Traceback" not in body and b"File \"" not in body
    if not body:
        assert status == 400, status
        return {}
    if allowed:
        assert status in allowed, (status, body[:300])
    document = json.loads(body)
    if status >= 400:
        assert document["errors"][0]["status"] == status, document
    return document


def test_no_spelling_of_a_route_reaches_it_without_a_token(product):
    for route in ROUTES:
        for target in spellings(route):
            for method, headers, body in (("GET", {}, None),
                                          ("POST", FORM, b"action=stop"),
                                          ("GET", {"Authorization": "Token nope"}, None)):
                status, answer = send(product, method, target, headers, body)
                assert status in (400, 401, 404, 405), (method, target, status, answer)
                assert_contract_shaped(status, answer)
            # With a token: served, or refused in the contract's shape.
            assert_contract_shaped(*send(product, "GET", target, AUTH))


def test_hostile_bodies_are_4xx_in_shape(product):
    url = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
    as_json = {**AUTH, "Content-Type": "application/json"}
    for body in (b"[" * 60000, b'{"action": ' * 20000 + b'"start"' + b"}" * 20000,
                 b'{"a":' * 6000 + b"1" + b"}" * 6000, b"\xff\xfe", b"1e999999"):
        assert_contract_shaped(*send(product, "POST", url, as_json, body), 400)
    # Chunked: read like any other body, up to a form's size.
    chunked = {**AUTH, **FORM, "Transfer-Encoding": "chunked"}
    answer = send(product, "POST", url, chunked, b"b\r\naction=stop\r\n0\r\n\r\n")
    assert_contract_shaped(*answer, 409)  # read and served: the instance is stopped
    huge = b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    assert_contract_shaped(*send(product, "POST", url, chunked, huge), 400)
    status, _ = send(product, "POST", url, chunked, b"zz\r\nbroken\r\n")
    assert 400 <= status < 500
    # Unknown charsets and odd content types: no action read, a 400.
    multipart = (b"--b\r\nContent-Disposition: form-data; name=\"action\"\r\n"
                 b"Content-Type: text/plain; charset=nope\r\n\r\nstart\r\n--b--\r\n")
    for content_type in (
            "application/x-www-form-urlencoded; charset=no-such-charset",
            "application/x-www-form-urlencoded; charset=utf-32",
            "application/x-www-form-urlencoded; charset=\"", "text/plain; charset=x",
            "multipart/form-data; boundary=b; charset=nope", "multipart/form-data",
            "multipart/form-data; boundary=" + "b" * 300, "application/jsonx", ";;;", "="):
        body = multipart if content_type.startswith("multipart") else b"action=start"
        answer = send(product, "POST", url, {**AUTH, "Content-Type": content_type}, body)
        assert_contract_shaped(*answer, 400)
    # Thousands of multipart parts before the action.
    part = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n"
    for count in (1200, 100000):
        body = (part * count + b"--b\r\nContent-Disposition: form-data; name=\"action\"\r\n"
                b"\r\nstart\r\n--b--\r\n")
        answer = send(product, "POST", url,
                      {**AUTH, "Content-Type": "multipart/form-data; boundary=b"}, body)
        assert_contract_shaped(*answer, 400)


def test_paging_numbers_out_of_range_are_400(product):
    for query in ("limit=99999999999999999999999999", "offset=1" + "0" * 5000,
                  "limit=1e308", "limit=-9223372036854775809", "offset=9223372036854775808",
                  "limit=%00", "limit=%E2%80%8B5", "limit=%D9%A3", "limit=\u0663",
                  "limit=1_000", "limit=%205", "limit=0x10", "offset=NaN",
                  "limit=1&limit=99999999999999999999", "limit=" + "9" * 50000):
        status, answer = send(product, "GET", f"/api/lambda-instances/?{query}", AUTH)
        assert_contract_shaped(status, answer, 400)
    status, answer = send(product, "GET", "/api/lambda-instances/?limit=999999999999999999"
                                          "&offset=999999999999999999", AUTH)
    assert assert_contract_shaped(status, answer, 200)["data"] == []


def test_long_odd_and_non_ascii_headers_are_401_in_shape(product):
    url = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
    for headers in (
            {"Authorization": "Token " + "A" * 60000}, {"Authorization": "Token " + "é" * 500},
            {"Authorization": "Token \x01\x02abc"}, {"Authorization": "Token\tabc\x7f"},
            {"Authorization": "Token " + DEMO_TOKEN + "\x00"},
            {"Authorization": "Token " + "x" * 512}, {"Authorization": "Token " + "x" * 513},
            {"X-Request-Id": "ü" * 40}, {"X-Request-Id": "a\x01b"}, {"X-Long": "x" * 60000}):
        assert_contract_shaped(*send(product, "GET", url, headers), 401)
    status, answer = send(product, "GET", url, {**AUTH, "X-Request-Id": "ü\x01" * 40})
    assert_contract_shaped(status, answer, 200)
    # Beyond the server's limit on a request's head: its own 4xx, before any app.
    status, _ = send(product, "GET", url, {**AUTH, "X-Huge": "x" * 200_000})
    assert 400 <= status < 500


def test_odd_ids_and_parameters_are_404_or_400_in_shape(product):
    for instance_id in ("x%00y", "%01%02%7f", "%C3%A9t%C3%A9", "%FF%FE", "\u0661" * 32,
                        "a" * 5000, DEMO_INSTANCE_ID + "%0A", "%E2%80%AE" + DEMO_INSTANCE_ID,
                        "{" + DEMO_INSTANCE_ID.upper() + "}", "\u00e9t\u00e9",
                        "urn:uuid:00000000-0000-0000-0000-000000000000"):
        target = f"/api/lambda-instances/{instance_id}/"
        assert_contract_shaped(*send(product, "GET", target, AUTH), 404, 200)
        assert_contract_shaped(*send(product, "POST", target, {**AUTH, **FORM},
                                     b"action=stop"), 404, 409)
        for action in ("%00", "%FF", "x" * 3000, "\u00e9", ACTION_ID + "%0d%0a", "%2e%2e"):
            status, answer = send(product, "GET", f"{target}actions/{action}", AUTH)
            assert_contract_shaped(status, answer, 404)
    for query in ("filter=%00", "filter=st%C3%A4tus", "filter=%FF", "filter=" + "i" * 20000,
                  "filter=status&filter=info", "%FF=%FE", "filter", "filter=\u00e9"):
        status, answer = send(product, "GET",
                              f"/api/lambda-instances/{DEMO_INSTANCE_ID}/?{query}", AUTH)
        assert_contract_shaped(status, answer, 400, 200)
