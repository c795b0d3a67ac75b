// An action's event stream, read with fetch() rather than EventSource: an EventSource
// cannot send the Authorization header, and the token must never be put in a URL.
//
// The parser follows the Server-Sent Events format (HTML's "event stream
// interpretation"): lines end with CRLF, LF or CR; a blank line dispatches the event;
// `:` starts a comment; `id:`, `event:`, `data:` (joined with newlines) and `retry:`.

import { authHeaders, errorFrom, reportUnauthorized, requestOptions } from "./api.js";

export class EventStreamParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.buffer = "";
    this.reset();
    this.lastId = null;
    this.retry = null;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = null;
  }

  // Feed a chunk of bytes (or null at the end); returns the events it completed.
  push(chunk) {
    this.buffer += chunk === null
      ? this.decoder.decode()
      : this.decoder.decode(chunk, { stream: true });
    const events = [];
    let match;
    // A lone CR at the very end may be the first half of a CRLF: wait for more.
    while ((match = /\r\n|\n|\r(?!$)/.exec(this.buffer)) !== null) {
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) {
        events.push(event);
      }
    }
    return events;
  }

  line(line) {
    if (line === "") {
      if (this.id !== null) {
        this.lastId = this.id;
      }
      const event = this.data.length
        ? { type: this.type || "message", data: this.data.join("\n"), id: this.lastId }
        : null;
      this.reset();
      return event;
    }
    if (line.startsWith(":")) {
      return null; // a comment: the server's keep-alive
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "event") {
      this.type = value;
    } else if (field === "data") {
      this.data.push(value);
    } else if (field === "id" && !value.includes("\0")) {
      this.id = value;
    } else if (field === "retry" && /^[0-9]+$/.test(value)) {
      this.retry = Number(value);
    }
    return null;
  }
}

const MAX_DELAY_MS = 15000;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// Follow the stream at `url` from the event after `lastId`, reconnecting with
// Last-Event-ID (the last event received) whenever the connection drops, until the
// server says the action has ended (the stream closes after its final state event,
// and a 204 answers a request with nothing after it).
//
// Callbacks: onEvent(type, data, seq), onStatus("connecting" | "live" |
// "reconnecting" | "ended"), onError(ApiError) for an answer that ends it (401, 404...).
// Returns {close()}.
export function followEvents(url, lastId, { onEvent, onStatus, onError, isFinished }) {
  const controller = new AbortController();
  const { signal } = controller;
  let delay = 2000;

  async function connect() {
    let failures = 0;
    onStatus("connecting");
    while (!signal.aborted) {
      let response;
      try {
        const headers = {
          ...authHeaders(),
          Accept: "text/event-stream",
          "Last-Event-ID": String(lastId),
        };
        response = await fetch(url, requestOptions("GET", headers, { signal }));
      } catch {
        if (signal.aborted) {
          return;
        }
        response = null; // the network: try again
      }
      if (response && response.status === 204) {
        onStatus("ended");
        return;
      }
      if (response && response.ok) {
        failures = 0;
        onStatus("live");
        const parser = new EventStreamParser();
        const reader = response.body.getReader();
        try {
          for (;;) {
            const { value, done } = await reader.read();
            const events = parser.push(done ? null : value);
            for (const event of events) {
              const seq = Number(event.id);
              if (Number.isInteger(seq) && seq > lastId) {
                lastId = seq;
              }
              onEvent(event.type, JSON.parse(event.data), seq);
            }
            if (done) {
              break;
            }
          }
        } catch {
          // The connection dropped in the middle: reconnect below.
        }
        if (parser.retry !== null) {
          delay = parser.retry;
        }
        if (signal.aborted) {
          return;
        }
        if (isFinished()) {
          onStatus("ended");
          return;
        }
      } else if (response && response.status < 500 && response.status !== 408) {
        const error = await errorFrom(response);
        if (response.status === 401) {
          reportUnauthorized(error);
        }
        onError(error);
        return;
      }
      failures += 1;
      onStatus("reconnecting");
      let wait = Math.min(delay * Math.min(failures, 4), MAX_DELAY_MS);
      if (response && response.headers.get("Retry-After")) {
        const seconds = Number.parseInt(response.headers.get("Retry-After"), 10);
        if (!Number.isNaN(seconds)) {
          wait = Math.min(seconds * 1000, MAX_DELAY_MS);
        }
      }
      await sleep(wait, signal);
    }
  }

  connect();
  return { close: () => controller.abort() };
}
