"""The OpenAPI 3 document of every endpoint, served at /api/openapi.json.

Every status a route can answer is listed with its body's schema, so a client (and the
property-based fuzz in tests/e2e) can hold each answer to it.
"""

from __future__ import annotations

from api import __version__

_JSON = "application/json"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict, description: str, **extra) -> dict:
    return {"description": description, "content": {_JSON: {"schema": schema, **extra}}}


def _error(status: int, detail: str) -> dict:
    return _json(_ref("schemas", "Errors"), detail,
                 example={"errors": [{"status": status, "detail": detail}]})


def _string(**extra) -> dict:
    return {"type": "string", **extra}


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    return {**schema, "required": required if required is not None else list(properties)}


def _status_line(short_description: str) -> dict:
    return _object({"short_description": _string(enum=[short_description]),
                    "code": {"type": "integer", "enum": [200]}})


_DATE_TIME = _nullable(_string(format="date-time"))
_INSTANCE_ID = {"name": "instance_id", "in": "path", "required": True,
                "description": "The instance's UUID; any other value is answered with 404",
                "schema": _string(format="uuid")}
_ACTION_ID = {"name": "action_id", "in": "path", "required": True,
              "schema": _string(format="uuid")}
_UNAUTHORIZED = _ref("responses", "Unauthorized")
_UNAVAILABLE = _ref("responses", "IdentityUnavailable")
_NOT_FOUND = _error(404, "The specified lambda instance doesn't exist.")
_ACTION_STATES = ["accepted", "running", "succeeded", "failed", "cancelled"]
_HOST_NAMES = {"type": "array", "items": _string()}
_STATUS_MESSAGES = ["STARTED", "STOPPED", "PENDING", "STARTING", "STOPPING", "DESTROYING",
                    "DESTROYED", "SCALING_UP", "SCALING_DOWN", "FAILED"]

SCHEMAS = {
    "Errors": _object({"errors": {"type": "array", "minItems": 1, "items": _object({
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": _string(),
        "message": _string(), "code": {"type": "integer"}, "details": _string(),
    }, required=["status", "detail"])}}),
    "Status": _object({
        "code": _string(enum=[str(code) for code in range(10)]),
        "message": _string(enum=_STATUS_MESSAGES),
        "detail": _string(),
        "failure_message": _string(),
    }, required=["code", "message", "detail"]),
    "InstanceSummary": _object({
        "id": _string(format="uuid"), "name": _string(),
        "status": _ref("schemas", "Status"), "href": _string(format="uri-reference")}),
    "Host": _object({"name": _string(), "role": _string(enum=["master", "slave"]),
                     "ip": _string(), "server_id": _string()}),
    "InstanceInfo": _object({
        "services": {"type": "array", "items": _string(
            enum=["hdfs", "yarn", "zookeeper", "kafka", "spark"])},
        "master_name": _nullable(_string()),
        "slaves": {"type": "integer", "minimum": 0},
        "hosts": {"type": "array", "items": _ref("schemas", "Host")},
        "left_out_hosts": _HOST_NAMES,
        "failure_message": _nullable(_string()),
        "created_at": _DATE_TIME, "updated_at": _DATE_TIME}),
    "InstanceDetails": _object({
        "id": _string(format="uuid"), "name": _string(),
        "status": _ref("schemas", "Status"), "info": _ref("schemas", "InstanceInfo"),
    }, required=["id", "name"]),
    # exclude: a form repeats the field (each value may be comma-separated); JSON gives a
    # list or one comma-separated string (null: none, as when it is absent).
    "ActionRequest": _object({"action": _string(enum=["start", "stop"]),
                              "exclude": _HOST_NAMES}, required=["action"]),
    "ActionRequestJson": _object({"action": _string(enum=["start", "stop"]),
                                  "exclude": {"anyOf": [_nullable(_string()), _HOST_NAMES]}},
                                 required=["action"]),
    "ActionSummary": _object({
        "id": _string(format="uuid"), "action": _string(enum=["start", "stop"]),
        "state": _string(enum=_ACTION_STATES),
        "excluded_hosts": _HOST_NAMES,
        "href": _string(format="uri-reference")}),
    # Who asked to cancel the action and when; null while nobody has.
    "ActionCancel": {"allOf": [_ref("schemas", "ActionSummary"), _object({
        "cancel_requested_by": _nullable(_string()),
        "cancel_requested_at": _DATE_TIME})]},
    "Step": _object({
        "name": _string(enum=["power_on", "wait_ssh", "playbook", "service_checks",
                              "power_off"]),
        "state": _string(enum=["running", "succeeded", "failed", "skipped", "cancelled"]),
        "started_at": _DATE_TIME, "finished_at": _DATE_TIME,
        "duration": _nullable({"type": "number"}), "message": _nullable(_string())}),
    "TaskResult": _object({
        "host": _string(), "task": _string(), "role": _nullable(_string()),
        "play": _nullable(_string()),
        "status": _string(enum=["ok", "changed", "failed", "unreachable", "skipped"]),
        "duration": _nullable({"type": "number"}), "message": _nullable(_string())}),
    # One service check of a start (lambda-check.yml): the latest result per service and
    # host. Read from the check's task result ("Service check <SERVICE>"), which is also in
    # playbook.tasks and in the event stream as a task event.
    "ServiceCheck": _object({
        "service": _string(), "host": _string(), "passed": {"type": "boolean"},
        "tried": _nullable(_string()), "seen": _string(),
        "seconds": _nullable({"type": "number"})}),
    # The JSON of each event's ``data:`` line in an action's event stream.
    "ActionEvent": _object({
        "seq": {"type": "integer", "minimum": 1}, "type": _string(enum=["state", "step",
                                                                          "task"]),
        "at": _string(format="date-time"), "attempt": _nullable({"type": "integer"}),
    }),
    "ActionHistoryItem": {"allOf": [_ref("schemas", "ActionCancel"), _object({
        "requested_by": _string(),
        "created_at": _DATE_TIME, "started_at": _DATE_TIME, "finished_at": _DATE_TIME,
        "attempts": {"type": "integer", "minimum": 0},
        "error": _nullable(_string()),
    })]},
    "Action": {"allOf": [_ref("schemas", "ActionCancel"), _object({
        "requested_by": _string(),
        "instance": _object({"id": _string(format="uuid"),
                             "status": _ref("schemas", "Status")}),
        "created_at": _DATE_TIME, "started_at": _DATE_TIME, "finished_at": _DATE_TIME,
        "attempts": {"type": "integer", "minimum": 0},
        "error": _nullable(_string()),
        "events": _object({"last_id": {"type": "integer", "minimum": 0},
                           "href": _string(format="uri-reference")}),
        "steps": {"type": "array", "items": _ref("schemas", "Step")},
        "checks": {"type": "array", "items": _ref("schemas", "ServiceCheck")},
        "playbook": _object({
            "hosts": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}},
            "tasks": {"type": "array", "items": _ref("schemas", "TaskResult")}}),
    })]},
}

_ACCEPTED = _object({
    "status": _object({"code": {"type": "integer", "enum": [202]},
                       "short-description": _string(enum=["Your request has been accepted"])}),
    "data": _object({"action": _ref("schemas", "ActionSummary")}),
}, required=["status"])

_CANCEL_ACCEPTED = _object({
    "status": _ACCEPTED["properties"]["status"],
    "data": _object({"action": _ref("schemas", "ActionCancel")}),
}, required=["status"])

_PAGINATION = _object({
    "count": {"type": "integer", "minimum": 0},
    "limit": _nullable({"type": "integer", "minimum": 0}),
    "offset": {"type": "integer", "minimum": 0},
    "next": _nullable(_string(format="uri-reference")),
    "previous": _nullable(_string(format="uri-reference"))})

_LIST = _object({
    "status": _status_line("Lambda instances"),
    "data": {"type": "array", "items": _ref("schemas", "InstanceSummary")},
    "pagination": _PAGINATION,
})

_HISTORY = _object({
    "status": _status_line("Lambda instance actions"),
    "data": {"type": "array", "items": _ref("schemas", "ActionHistoryItem")},
    "pagination": _PAGINATION,
})

# An empty value (``?limit=``) reads as an absent one. The databases' integers are 64-bit.
_MAX_INT64 = 2**63 - 1
_PAGING = [
    {"name": "limit", "in": "query", "description": "At most this many instances (none: all)",
     "allowEmptyValue": True,
     "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_INT64}},
    {"name": "offset", "in": "query", "description": "Skip this many instances first",
     "allowEmptyValue": True,
     "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_INT64, "default": 0}},
]

_HISTORY_PAGING = [
    {"name": "limit", "in": "query", "allowEmptyValue": True,
     "description": "At most this many actions (none: 20)",
     "schema": {"type": "integer", "minimum": 0, "maximum": 100, "default": 20}},
    {"name": "offset", "in": "query", "description": "Skip this many actions first",
     "allowEmptyValue": True,
     "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_INT64, "default": 0}},
]

_EVENTS_DESCRIPTION = (
    "Every event is stored with the action and numbered 1, 2, 3... per action, so a "
    "client that reconnects with `Last-Event-ID: n` (or `?after=n`) gets exactly the "
    "events after n; the action resource's `events.last_id` is the last one its own read "
    "has seen. Types: `state` (`state`: accepted, running, succeeded, failed or "
    "cancelled; with `kind` and `requested_by` when accepted, `error` when ended, "
    "`handed_back` when a stopping worker gave it back, `cancel_requested_by` when its "
    "owner asked to cancel it), `step` (`name`, `state`; once ended `message` and "
    "`duration`, and `interrupted` when a later attempt closed it), `task` (`host`, "
    "`task`, `role`, `play`, `status`: ok, changed, failed, unreachable or skipped, "
    "`message`, `duration`). Each event's JSON also has `seq`, `type`, `at` and "
    "`attempt`. Checks, in order: the token (401), the instance and the action (404), "
    "the last event id (400).")

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Lambda instance orchestration API", "version": __version__,
             "description": "Start and stop lambda instances (Hadoop, Spark, Kafka clusters "
                            "on a Synnefo cloud) and follow the actions. The trailing slash "
                            "of every path is optional."},
    "components": {
        "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                      "name": "Authorization",
                                      "description": "`Token <~okeanos token>`"}},
        "schemas": SCHEMAS,
        "responses": {
            "Unauthorized": {
                "description": "Missing, malformed or invalid token",
                "headers": {"WWW-Authenticate": {"schema": _string(enum=["Token"])}},
                "content": {_JSON: {"schema": _ref("schemas", "Errors"), "example": {
                    "errors": [{"message": "Invalid token", "code": 401,
                                "details": "unauthorized", "status": 401,
                                "detail": "Unauthorized. Request failed because user "
                                          "provided an invalid token."}]}}}},
            "IdentityUnavailable": {
                **_error(503, "The identity service could not be reached to validate the "
                              "token; try again later."),
                "headers": {"Retry-After": {"required": True, "description": "Seconds",
                                            "schema": {"type": "integer", "minimum": 0}}}},
        },
    },
    "security": [{"token": []}],
    "paths": {
        "/api/authenticate/": {"get": {
            "operationId": "authenticate",
            "summary": "Validate the token and return the user's name",
            "responses": {
                "200": _json(_object({
                    "status": {"type": "integer", "enum": [200]},
                    "result": _string(enum=["Success"]),
                    "data": _object({"name": _string()})}), "The token is valid"),
                "401": _UNAUTHORIZED, "503": _UNAVAILABLE}}},
        "/api/lambda-instances/": {"get": {
            "operationId": "listInstances",
            "summary": "The caller's lambda instances, oldest first",
            "parameters": _PAGING,
            "responses": {"200": _json(_LIST, "A page of instances"),
                          "400": _error(400, "limit must not be negative"),
                          "401": _UNAUTHORIZED, "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/": {
            "get": {
                "operationId": "getInstance",
                "summary": "Details of one lambda instance",
                "parameters": [_INSTANCE_ID, {"name": "filter", "in": "query", "schema": _string(
                    enum=["status", "info"])}],
                "responses": {
                    "200": _json(_object({
                        "status": _status_line("Lambda instance details"),
                        "data": {"type": "array", "minItems": 1, "maxItems": 1,
                                 "items": _ref("schemas", "InstanceDetails")}}),
                        "The instance"),
                    "400": _error(400, "filter can be status or info."),
                    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "503": _UNAVAILABLE}},
            "post": {
                "operationId": "requestAction",
                "summary": "Start or stop a lambda instance",
                "description": "Checks, in order: the token (401), the instance (404), the "
                               "action parameter, then exclude (400), the instance's status "
                               "(409).\n\n"
                               "A start may leave out slaves (a VM that will not boot): "
                               "exclude names them as the instance's info lists its hosts. "
                               "An unknown host, the master, or exclude with a stop is a 400. "
                               "The instance then runs without them (info.left_out_hosts). "
                               "A start is also allowed from STARTED while hosts are left "
                               "out, to bring them back: it may keep out only hosts that are "
                               "out, and must bring one back, else 409.",
                "parameters": [_INSTANCE_ID],
                "requestBody": {"required": True, "content": {
                    # Arrays in forms: the field repeated (form style, exploded).
                    **{media: {"schema": _ref("schemas", "ActionRequest")}
                       for media in ("multipart/form-data",
                                     "application/x-www-form-urlencoded")},
                    _JSON: {"schema": _ref("schemas", "ActionRequestJson")}}},
                "responses": {
                    "202": {**_json(_ACCEPTED, "Accepted; the Location header names the "
                                               "new action"),
                            "headers": {"Location": {"required": True, "schema": _string(
                                format="uri-reference")}},
                            "links": {"GetAction": {
                                "operationId": "getAction",
                                "parameters": {
                                    "instance_id": "$request.path.instance_id",
                                    "action_id": "$response.body#/data/action/id"}}}},
                    "400": _error(400, "action POST parameter can be used with start or "
                                       "stop value."),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _error(409, "The specified lambda instance is already started."),
                    "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/actions/": {"get": {
            "operationId": "listActions",
            "summary": "The instance's actions, newest first: kind, state, who asked, "
                       "times and outcome",
            "parameters": [_INSTANCE_ID, *_HISTORY_PAGING],
            "responses": {
                "200": _json(_HISTORY, "A page of the instance's actions"),
                "400": _error(400, "limit must be between 0 and 100."),
                "401": _UNAUTHORIZED, "404": _NOT_FOUND, "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/actions/{action_id}": {"get": {
            "operationId": "getAction",
            "summary": "The state of one action, its steps, service checks and playbook results",
            "description": (
                "A start ends with the step service_checks: playbooks/lambda-check.yml checks "
                "that each listed service does real work (HDFS stores and returns a file, YARN "
                "lists every NodeManager RUNNING, ZooKeeper answers ruok and keeps a znode, "
                "Kafka has every broker registered and delivers a message, "
                "Spark has every worker ALIVE and runs SparkPi). "
                "checks lists each check's service, host, what was tried, what was seen and "
                "how long it took; a failed check fails the start, its error naming the "
                "service, the host and what was seen, unless the server runs with "
                "LAMBDA_CHECKS=report (recorded, the start succeeds) or off (step skipped)."),
            "parameters": [_INSTANCE_ID, _ACTION_ID],
            "responses": {
                "200": _json(_object({"status": _status_line("Lambda instance action"),
                                      "data": _ref("schemas", "Action")}), "The action"),
                "401": _UNAUTHORIZED,
                "404": _error(404, "The specified action doesn't exist."),
                "503": _UNAVAILABLE}}},
        "/api/lambda-instances/{instance_id}/actions/{action_id}/events": {"get": {
            "operationId": "streamActionEvents",
            "summary": "The action's events as Server-Sent Events, as they happen",
            "description": _EVENTS_DESCRIPTION,
            "parameters": [
                _INSTANCE_ID, _ACTION_ID,
                {"name": "Last-Event-ID", "in": "header",
                 "description": "Send the events after this one (an EventSource sends it "
                                "when it reconnects); it takes precedence over `after`",
                 "schema": _string(pattern=r"^[0-9]{0,18}$")},
                {"name": "after", "in": "query", "allowEmptyValue": True,
                 "description": "As Last-Event-ID, for clients that cannot set headers",
                 "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}}],
            "responses": {
                "200": {"description": "The stream: `retry:` first, then one block per "
                                       "event (`id:` its seq, `event:` its type, `data:` "
                                       "the ActionEvent schema's JSON) and `: keep-alive` "
                                       "comments; it ends after the action's final state",
                        # One event (schemathesis and OpenAPI 3.2's itemSchema read it so).
                        "content": {"text/event-stream": {"schema": _object({
                            "event": _string(enum=["state", "step", "task"]),
                            "id": _string(pattern=r"^[1-9][0-9]*$"),
                            "data": _string(description="The ActionEvent schema's JSON")})}}},
                "204": {"description": "The action has ended and no event follows the one "
                                       "given: nothing to stream (an EventSource stops)"},
                "400": _error(400, "The last event id (Last-Event-ID, or after) must be a "
                                   "non-negative integer of at most 18 digits."),
                "401": _UNAUTHORIZED,
                "404": _error(404, "The specified action doesn't exist."),
                "503": {**_error(503, "Too many event streams are open on this server; "
                                      "try again later. (Or the identity service is "
                                      "unavailable, as on every route.)"),
                        "headers": {"Retry-After": {
                            "required": True, "description": "Seconds",
                            "schema": {"type": "integer", "minimum": 0}}}}}}},
        "/api/lambda-instances/{instance_id}/actions/{action_id}/cancel": {"post": {
            "operationId": "cancelAction",
            "summary": "Cancel an action that has not ended",
            "description": "202 once the request is recorded. An action no worker has "
                           "taken yet ends `cancelled` at once; a running one is stopped "
                           "by its worker within about a second (its playbook's processes "
                           "killed, no further step started) and ends `cancelled`. Either "
                           "way the instance ends FAILED, its failure_message saying who "
                           "cancelled, at which step, and what may be half way; start and "
                           "stop are both allowed from there. No request body is read.",
            "parameters": [_INSTANCE_ID, _ACTION_ID],
            "responses": {
                "202": {**_json(_CANCEL_ACCEPTED, "The cancel is recorded; the Location "
                                                  "header names the action"),
                        "headers": {"Location": {"required": True, "schema": _string(
                            format="uri-reference")}}},
                "401": _UNAUTHORIZED,
                "404": _error(404, "The specified action doesn't exist."),
                "409": _error(409, "The action has already ended (succeeded)."),
                "503": _UNAVAILABLE}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object", "required": ["openapi", "paths"]},
                                       "OpenAPI 3")}}},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "The service's metrics, in Prometheus' text format",
            "description": "No token: answered only to the addresses in "
                           "LAMBDA_METRICS_ALLOW (loopback by default), others get a 403. "
                           "Sums every worker process of the server.",
            "security": [],
            "responses": {
                "200": {"description": "Prometheus' text exposition format",
                        "content": {"text/plain": {"schema": _string()}}},
                "403": _error(403, "Metrics are served only to the addresses the service "
                                   "allows.")}}},
    },
}


class OpenApiResource:
    async def on_get(self, req, resp):
        resp.media = DOCUMENT
