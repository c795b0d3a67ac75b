// The API as the page uses it: the token, JSON requests, the contract's error bodies.
//
// The token lives in this tab's sessionStorage only. It is sent in the Authorization
// header and nowhere else: never in a URL, never logged.

const TOKEN_KEY = "lambda.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// An answer that is not a success: `detail` is the contract's message
// (errors[0].detail), or a plain description when the body has none.
export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

let unauthorizedHandler = () => {};

// Called when the API refuses the stored token (401): the page signs out.
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

// An answer of 401 that did not come through request() (the event stream's).
export function reportUnauthorized(error) {
  unauthorizedHandler(error);
}

export function authHeaders(token = getToken()) {
  return { Authorization: `Token ${token}` };
}

// The request options every call shares: no cookies, no referrer, no cache.
export function requestOptions(method, headers, extra = {}) {
  return {
    method,
    headers,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
    ...extra,
  };
}

export async function errorFrom(response) {
  let detail = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
    if (first && typeof first.detail === "string") {
      detail = first.detail;
    }
  } catch {
    // Not JSON (a proxy's page, say): the status line says enough.
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, detail, Number.isNaN(retryAfter) ? null : retryAfter);
}

// One JSON request with the stored token (or `token`, to check one before storing it).
// Resolves to {status, body, location}; rejects with an ApiError.
export async function request(method, path, { body, signal, token } = {}) {
  const headers = { ...authHeaders(token || getToken()), Accept: "application/json" };
  const extra = { signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    extra.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, requestOptions(method, headers, extra));
  } catch (error) {
    if (error.name === "AbortError") {
      throw error;
    }
    throw new ApiError(0, "The service could not be reached; check your connection.");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !token) {
      unauthorizedHandler(error);
    }
    throw error;
  }
  const text = await response.text();
  return {
    status: response.status,
    body: text ? JSON.parse(text) : null,
    location: response.headers.get("Location"),
  };
}

export const paths = {
  authenticate: () => "/api/authenticate/",
  instances: (limit, offset) => `/api/lambda-instances/?limit=${limit}&offset=${offset}`,
  instance: (id) => `/api/lambda-instances/${encodeURIComponent(id)}/`,
  actions: (id, limit, offset) =>
    `/api/lambda-instances/${encodeURIComponent(id)}/actions/?limit=${limit}&offset=${offset}`,
  action: (id, actionId) =>
    `/api/lambda-instances/${encodeURIComponent(id)}/actions/${encodeURIComponent(actionId)}`,
  events: (id, actionId) => `${paths.action(id, actionId)}/events`,
  cancel: (id, actionId) => `${paths.action(id, actionId)}/cancel`,
};

// Every instance of the caller, page after page.
export async function listInstances(signal) {
  const limit = 100;
  const all = [];
  for (let offset = 0; ; offset += limit) {
    const { body } = await request("GET", paths.instances(limit, offset), { signal });
    all.push(...body.data);
    if (!body.pagination || !body.pagination.next || body.data.length === 0) {
      return all;
    }
  }
}

export async function getInstance(id, signal) {
  const { body } = await request("GET", paths.instance(id), { signal });
  return body.data[0];
}

export async function listActions(id, limit, offset, signal) {
  const { body } = await request("GET", paths.actions(id, limit, offset), { signal });
  return body;
}

export async function getAction(id, actionId, signal) {
  const { body } = await request("GET", paths.action(id, actionId), { signal });
  return body.data;
}

// Start or stop (a start may leave slaves out): the new action's summary.
export async function requestAction(id, kind, exclude = []) {
  const body = exclude.length ? { action: kind, exclude } : { action: kind };
  const answer = await request("POST", paths.instance(id), { body });
  return answer.body.data.action;
}

export async function cancelAction(id, actionId) {
  const { body } = await request("POST", paths.cancel(id, actionId));
  return body.data.action;
}
