// Small DOM helpers. Text always goes in as text (textContent), never as HTML, and no
// element gets a style attribute: the Content-Security-Policy allows neither.

// h("a", {href: "#/", class: "x"}, "text", child...): an element.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replaceChildren(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// How each state is shown: a glyph and a word, so that colour is never the only sign.
// `tone` picks the colour (good, busy, idle, bad, warn).
const LOOKS = {
  // Instance status
  STARTED: ["✔", "Started", "good"],
  STOPPED: ["■", "Stopped", "idle"],
  PENDING: ["…", "Pending", "idle"],
  STARTING: ["▶", "Starting", "busy"],
  STOPPING: ["◼", "Stopping", "busy"],
  DESTROYING: ["✖", "Destroying", "busy"],
  DESTROYED: ["✖", "Destroyed", "idle"],
  SCALING_UP: ["▲", "Scaling up", "busy"],
  SCALING_DOWN: ["▼", "Scaling down", "busy"],
  FAILED: ["✖", "Failed", "bad"],
  // Action and step states
  accepted: ["…", "Accepted", "idle"],
  pending: ["○", "Pending", "idle"],
  running: ["▶", "Running", "busy"],
  succeeded: ["✔", "Succeeded", "good"],
  failed: ["✖", "Failed", "bad"],
  cancelled: ["⊘", "Cancelled", "warn"],
  skipped: ["–", "Skipped", "idle"],
  // Task results
  ok: ["✔", "ok", "good"],
  changed: ["✱", "changed", "busy"],
  unreachable: ["⚠", "unreachable", "bad"],
  left_out: ["⊘", "left out", "warn"],
};

export function look(state) {
  return LOOKS[state] || ["?", String(state), "idle"];
}

// A status badge: glyph (hidden from screen readers) and text.
export function badge(state, { label, small = false } = {}) {
  const [glyph, word, tone] = look(state);
  const classes = `badge badge-${tone}${small ? " badge-small" : ""}`;
  return h("span", { class: classes, dataset: { state } },
    h("span", { class: "badge-glyph", "aria-hidden": "true" }, glyph),
    h("span", { class: "badge-text" }, label || word));
}

// Task results are written as Ansible writes them; steps and actions read better
// capitalised.
export const RESULT_ORDER = ["ok", "changed", "failed", "unreachable", "skipped"];

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) {
    return "";
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  return `${minutes} min ${String(rest).padStart(2, "0")} s`;
}

const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function formatTime(iso) {
  if (!iso) {
    return "";
  }
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? TIME.format(date)
    : DATE_TIME.format(date);
}

export function timeElement(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, formatTime(iso)) : "";
}

export function ago(iso) {
  if (!iso) {
    return "";
  }
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) {
    return "just now";
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  if (seconds < 86400) {
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  return formatTime(iso);
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

// Say something to screen readers (the page's polite live region).
export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A fresh text node after a beat, so that the same words are announced again.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}
