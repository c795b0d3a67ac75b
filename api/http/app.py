"""The Falcon application factory: routes wired to the collaborators it is handed.

Nothing is built at import time; ``api.bootstrap.create_http_app`` hands it the pieces.
"""

from __future__ import annotations

import falcon

from api.http.errors import register_error_handlers
from api.http.middleware import AuthMiddleware, RequestIdMiddleware
from api.http.openapi import OpenApiResource
from api.http.resources import AuthenticateResource, InstanceResource, InstancesResource

PUBLIC_PATHS = frozenset({"/api/openapi.json"})


def create_app(*, identity, uow_factory, dispatcher, token_cipher) -> falcon.App:
    app = falcon.App(middleware=[RequestIdMiddleware(), AuthMiddleware(identity, PUBLIC_PATHS)])
    app.req_options.strip_url_path_trailing_slash = True
    register_error_handlers(app)
    instance = InstanceResource(uow_factory, dispatcher, token_cipher)
    app.add_route("/api/openapi.json", OpenApiResource())
    app.add_route("/api/authenticate", AuthenticateResource())
    app.add_route("/api/lambda-instances", InstancesResource(uow_factory))
    app.add_route("/api/lambda-instances/{instance_id}", instance)
    app.add_route("/api/lambda-instances/{instance_id}/actions/{action_id}", instance,
                  suffix="action")
    return app

