"""The framework ceiling: a bare Falcon (ASGI) responder that answers a small JSON body.

It has the product's routes and trailing-slash handling and nothing else: no middleware,
no database, no identity. Served by ``benchmarks.serve bare`` under the product's own
server (``api.server``), it is the "(a)" every product figure is divided by.
"""

from __future__ import annotations

import falcon.asgi

BODY = {"status": {"code": 200, "short-description": "ok"}}


class BareResource:
    async def on_get(self, req, resp, instance_id):
        resp.media = BODY

    async def on_post(self, req, resp, instance_id):
        resp.media = BODY


def create_app() -> falcon.asgi.App:
    app = falcon.asgi.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/api/lambda-instances/{instance_id}", BareResource())
    return app
