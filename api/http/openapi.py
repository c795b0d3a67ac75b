"""The OpenAPI 3 document of every endpoint, served at /api/openapi.json."""

from __future__ import annotations

from api import __version__


def _error(status: int, example: str) -> dict:
    return {"description": example, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Errors"},
        "example": {"errors": [{"status": status, "detail": example}]}}}}


_INSTANCE_ID = {"name": "instance_id", "in": "path", "required": True,
                "schema": {"type": "string", "format": "uuid"}}
_UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}
_UNAVAILABLE = {"$ref": "#/components/responses/IdentityUnavailable"}
_NOT_FOUND = _error(404, "The specified lambda instance doesn't exist.")

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Lambda instance orchestration API", "version": __version__,
             "description": "Start and stop lambda instances (Hadoop, Spark, Kafka clusters "
                            "on a Synnefo cloud) and follow the actions."},
    "components": {
        "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                      "name": "Authorization",
                                      "description": "`Token <~okeanos token>`"}},
        "schemas": {
            "Errors": {"type": "object", "required": ["errors"], "properties": {
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "detail": {"type": "string"},
                    "message": {"type": "string"}, "code": {"type": "integer"},
                    "details": {"type": "string"}}}}}},
            "Status": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string", "enum": [
                    "STARTED", "STOPPED", "PENDING", "STARTING", "STOPPING", "DESTROYING",
                    "DESTROYED", "SCALING_UP", "SCALING_DOWN", "FAILED"]},
                "detail": {"type": "string"}}},
            "ActionRequest": {"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": ["start", "stop"]}}},
            "Step": {"type": "object", "properties": {
                "name": {"type": "string", "enum": ["power_on", "wait_ssh", "playbook",
                                                   "power_off"]},
                "state": {"type": "string", "enum": ["running", "succeeded", "failed",
                                                     "skipped"]},
                "started_at": {"type": "string", "format": "date-time", "nullable": True},
                "finished_at": {"type": "string", "format": "date-time", "nullable": True},
                "duration": {"type": "number", "nullable": True},
                "message": {"type": "string", "nullable": True}}},
            "Action": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"},
                "action": {"type": "string", "enum": ["start", "stop"]},
                "state": {"type": "string", "enum": ["accepted", "running", "succeeded",
                                                     "failed"]},
                "href": {"type": "string"},
                "error": {"type": "string", "nullable": True},
                "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                "playbook": {"type": "object"}}},
        },
        "responses": {
            "Unauthorized": {"description": "Missing, malformed or invalid token",
                             "content": {"application/json": {
                                 "schema": {"$ref": "#/components/schemas/Errors"}}}},
            "IdentityUnavailable": _error(503, "The identity service could not be reached "
                                               "to validate the token; try again later."),
        },
    },
    "security": [{"token": []}],
    "paths": {
        "/api/authenticate/": {"get": {
            "summary": "Validate the token and return the user's name",
            "responses": {"200": {"description": "The token is valid"},
                          "401": _UNAUTHORIZED, "503": _UNAVAILABLE}}},
        "/api/lambda-instances/": {"get": {
            "summary": "The caller's lambda instances",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": {"description": "A page of instances"},
                          "400": _error(400, "limit must not be negative"),
                          "401": _UNAUTHORIZED, "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/": {
            "get": {
                "summary": "Details of one lambda instance",
                "parameters": [_INSTANCE_ID, {"name": "filter", "in": "query", "schema": {
                    "type": "string", "enum": ["status", "info"]}}],
                "responses": {"200": {"description": "The instance"}, "401": _UNAUTHORIZED,
                              "404": _NOT_FOUND, "503": _UNAVAILABLE}},
            "post": {
                "summary": "Start or stop a lambda instance",
                "parameters": [_INSTANCE_ID],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "$ref": "#/components/schemas/ActionRequest"}},
                    "application/x-www-form-urlencoded": {"schema": {
                        "$ref": "#/components/schemas/ActionRequest"}},
                    "application/json": {"schema": {
                        "$ref": "#/components/schemas/ActionRequest"}}}},
                "responses": {
                    "202": {"description": "Accepted; the Location header names the action",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"example": {"status": {
                                "code": 202,
                                "short-description": "Your request has been accepted"}}}}},
                    "400": _error(400, "action POST parameter can be used with start or "
                                       "stop value."),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _error(409, "The specified lambda instance is already started."),
                    "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/actions/{action_id}": {"get": {
            "summary": "The state of one action, its steps and playbook results",
            "parameters": [_INSTANCE_ID, {"name": "action_id", "in": "path", "required": True,
                                          "schema": {"type": "string", "format": "uuid"}}],
            "responses": {"200": {"description": "The action", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "data": {"$ref": "#/components/schemas/Action"}}}}}},
                "401": _UNAUTHORIZED,
                "404": _error(404, "The specified action doesn't exist."),
                "503": _UNAVAILABLE}}},
        "/api/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3"}}}},
    },
}


class OpenApiResource:
    def on_get(self, req, resp):
        resp.media = DOCUMENT
