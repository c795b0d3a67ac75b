"""The web page's routes (public, strict Content-Security-Policy, cached by ETag) and its
files (no inline script or style, nothing from another origin), through the Falcon app.
The page itself is tested in a real browser: tests/e2e/test_web_page.py."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from falcon import testing

from api.adapters.crypto import TokenCipher
from api.http.app import create_app
from api.http.webpage import CONTENT_SECURITY_POLICY, WEB_DIR
from tests.conftest import FakeIdentity

FILES = {
    "app.js": "text/javascript", "api.js": "text/javascript", "sse.js": "text/javascript",
    "app.css": "text/css", "favicon.svg": "image/svg+xml",
}


@pytest.fixture
def identity():
    return FakeIdentity({})


@pytest.fixture
def client(identity, uow_factory):
    class NoDispatch:
        def dispatch(self, action_id):
            raise AssertionError("the page never dispatches")

    return testing.TestClient(create_app(
        identity=identity, uow_factory=uow_factory, dispatcher=NoDispatch(),
        token_cipher=TokenCipher(Fernet.generate_key())))


def assert_locked_down(resp):
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_is_public_and_locked_down(client, identity):
    resp = client.simulate_get("/ui/")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>Lambda instances</title>" in resp.text
    assert_locked_down(resp)
    assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["ETag"]
    assert client.simulate_get("/ui").text == resp.text
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    for name, content_type in FILES.items():
        file = client.simulate_get(f"/ui/{name}")
        assert file.status_code == 200, name
        assert file.headers["Content-Type"].startswith(content_type), name
        assert_locked_down(file)
    assert identity.calls == 0  # no token asked for, none checked


def test_root_leads_to_the_page(client):
    resp = client.simulate_get("/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/"
    assert client.simulate_head("/ui/").status_code == 200


def test_a_known_etag_is_a_304(client):
    etag = client.simulate_get("/ui/app.js").headers["ETag"]
    again = client.simulate_get("/ui/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = client.simulate_get("/ui/app.js", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.content


@pytest.mark.parametrize("path", ["/ui/nothing.js", "/ui/..%2Fwebpage.py", "/ui/__init__.py",
                                  "/ui/%2e%2e%2f%2e%2e%2fsettings.py"])
def test_only_the_pages_files_are_served(client, path):
    resp = client.simulate_get(path)
    assert resp.status_code == 404
    assert resp.json["errors"][0]["status"] == 404


def test_the_files_hold_no_inline_code_and_reach_no_other_origin():
    html = (WEB_DIR / "index.html").read_text()
    # Every script is a file of the page; no inline script, style or handler.
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/ui/app.js">']
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    for path in WEB_DIR.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
        if path.suffix == ".js":
            # Text goes in as text; nothing is evaluated; no inline style is set.
            assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|eval\(|"
                                 r"new Function|document\.write|setAttribute\(\"style",
                                 text), path.name
            for module in re.findall(r'from "\./([a-z]+\.js)"', text):
                assert (WEB_DIR / module).is_file(), (path.name, module)
    for referenced in re.findall(r'(?:src|href)="/ui/([^"]+)"', html):
        assert (WEB_DIR / referenced).is_file(), referenced


def test_the_pages_action_rules_are_the_services():
    from api.domain.model import ACTION_RULES

    common = (WEB_DIR / "common.js").read_text()
    allowed_from = common.split("export const ALLOWED_FROM = {", 1)[1].split("};", 1)[0]
    brings_back = common.split("export const BRINGS_BACK_LEFT_OUT = {", 1)[1].split("};")[0]
    for kind, rule in ACTION_RULES.items():
        match = re.search(rf"{kind.value}: \[([^\]]*)\]", allowed_from)
        assert match, kind
        assert sorted(re.findall(r'"([A-Z_]+)"', match.group(1))) == sorted(
            status.name for status in rule.allowed_from), kind
        # From the status "already" there while hosts are left out, if the rule says so.
        again = re.search(rf'{kind.value}: "([A-Z_]+)"', brings_back)
        assert (again.group(1) if again else None) == (
            rule.already.name if rule.brings_back_left_out else None), kind
