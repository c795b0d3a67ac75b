"""The operator's web page: plain HTML, CSS and JavaScript from ``api/http/web/``.

The page's files are public (the auth middleware's public resources): they hold no data.
Everything the page shows it reads through the API, with the token the operator typed,
which the page keeps in the tab's ``sessionStorage`` and sends only in the
``Authorization`` header (never in a URL).

Every answer of these routes carries a strict Content-Security-Policy: scripts, styles,
images and connections from this origin only, no inline script or style, no frames, no
form submissions, no ``<base>``. The files are read once, when the app is built, and
served from memory with an ETag (``Cache-Control: no-cache``: a browser revalidates,
so a new release is seen at the next load).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import falcon

WEB_DIR = Path(__file__).with_name("web")
PAGE_PATH = "/ui/"
INDEX = "index.html"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class WebFile:
    content_type: str
    body: bytes
    etag: str


def load_web_files(directory: Path = WEB_DIR) -> dict[str, WebFile]:
    """The page's files by name (one flat directory: a name never reaches the disk)."""
    files = {}
    for path in sorted(directory.iterdir()):
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        files[path.name] = WebFile(content_type, body,
                                   '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    if INDEX not in files:
        raise RuntimeError(f"the web page's {INDEX} is missing from {directory}")
    return files


class WebPageResource:
    """``GET /ui/`` (the page) and ``GET /ui/{name}`` (its scripts, style sheet, icon)."""

    def __init__(self, files: dict[str, WebFile]):
        self.files = files

    async def on_get(self, req, resp):
        self._send(req, resp, self.files[INDEX])

    async def on_get_file(self, req, resp, name):
        web_file = self.files.get(name)
        if web_file is None:
            raise falcon.HTTPNotFound(description="No such file.")
        self._send(req, resp, web_file)

    # Falcon sends no body in answer to HEAD.
    on_head = on_get
    on_head_file = on_get_file

    @staticmethod
    def _send(req, resp, web_file: WebFile) -> None:
        for header, value in SECURITY_HEADERS.items():
            resp.set_header(header, value)
        resp.cache_control = ["no-cache"]
        resp.etag = web_file.etag
        resp.content_type = web_file.content_type
        if web_file.etag in (req.get_header("If-None-Match") or "").replace(" ", "").split(","):
            resp.status = falcon.HTTP_304
            return
        resp.data = web_file.body


class RootResource:
    """``GET /``: to the page."""

    async def on_get(self, req, resp):
        resp.status = falcon.HTTP_302
        resp.location = PAGE_PATH
        for header, value in SECURITY_HEADERS.items():
            resp.set_header(header, value)

    on_head = on_get
