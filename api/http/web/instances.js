// The instances view: every instance of the caller with its status, services, hosts and
// last action; a filter; Start and Stop. Refreshed every few seconds while visible: the
// list is one request, and an instance's details and last action are read again only
// when its status changed or its last action has not ended.

import { ApiError, getInstance, listActions, listInstances } from "./api.js";
import {
  FINISHED,
  actionButtons,
  actionHash,
  instanceHash,
  kindWord,
  leftOutHosts,
  poll,
  statusOf,
} from "./common.js";
import { ago, badge, formatTime, h, replaceChildren } from "./dom.js";

const STATUS_GROUPS = {
  all: () => true,
  running: (s) => s === "STARTED",
  stopped: (s) => s === "STOPPED",
  failed: (s) => s === "FAILED",
  busy: (s) => !["STARTED", "STOPPED", "FAILED"].includes(s),
};

export function mountInstances(container, { navigate }) {
  document.title = "Instances · Lambda instances";
  const controller = new AbortController();
  const known = new Map(); // id -> {details, lastAction, status}
  const rows = new Map(); // id -> {row, signature}
  let instances = [];
  let loaded = false;

  const filterInput = h("input", {
    id: "filter",
    type: "search",
    placeholder: "Name, status or service",
    autocomplete: "off",
  });
  const statusSelect = h("select", { id: "status-filter" },
    h("option", { value: "all" }, "All statuses"),
    h("option", { value: "running" }, "Started"),
    h("option", { value: "stopped" }, "Stopped"),
    h("option", { value: "failed" }, "Failed"),
    h("option", { value: "busy" }, "In progress"));
  const summary = h("span", { id: "instances-summary" }, "Loading…");
  const freshness = h("span", { id: "instances-freshness" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const table = h("table", { class: "table table-cards", id: "instances" },
    h("caption", { class: "sr-only" }, "Your lambda instances"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Instance"),
      h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Services"),
      h("th", { scope: "col" }, "Hosts"),
      h("th", { scope: "col" }, "Last action"),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    tbody);

  replaceChildren(container,
    h("section", { "aria-labelledby": "instances-title" },
      h("div", { class: "page-head" },
        h("div", {}, h("h1", { id: "instances-title" }, "Instances"),
          h("p", { class: "muted subtitle" }, summary, freshness))),
      h("div", { class: "toolbar", role: "search" },
        h("div", { class: "field" }, h("label", { for: "filter" }, "Filter"), filterInput),
        h("div", { class: "field" }, h("label", { for: "status-filter" }, "Status"), statusSelect)),
      h("div", { class: "card card-flush" }, table, empty)));

  filterInput.addEventListener("input", applyFilter);
  statusSelect.addEventListener("change", applyFilter);

  function matches(instance) {
    const status = statusOf(instance);
    if (!STATUS_GROUPS[statusSelect.value](status)) {
      return false;
    }
    const words = filterInput.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const info = known.get(instance.id)?.details?.info;
    const text = [instance.name, instance.id, status, ...(info ? info.services : [])]
      .join(" ").toLowerCase();
    return words.every((word) => text.includes(word));
  }

  function applyFilter() {
    let shown = 0;
    for (const instance of instances) {
      const visible = matches(instance);
      rows.get(instance.id).row.hidden = !visible;
      shown += visible ? 1 : 0;
    }
    const total = instances.length;
    summary.textContent = total === shown
      ? `${total} instance${total === 1 ? "" : "s"}`
      : `${shown} of ${total} instances shown`;
    empty.hidden = shown > 0 || !loaded;
    empty.textContent = total === 0
      ? "You have no lambda instances." : "No instance matches the filter.";
  }

  function lastActionCell(entry, instance) {
    const action = entry?.lastAction;
    if (!action) {
      return h("span", { class: "muted" }, entry ? "None yet" : "…");
    }
    return h("div", { class: "stack" },
      h("span", { class: "inline" },
        h("a", { href: actionHash(instance.id, action.id), dataset: { focus: "last-action" } },
          kindWord(action.action)),
        badge(action.state, { small: true })),
      h("span", { class: "muted small" }, ago(action.finished_at || action.created_at)));
  }

  function hostsCell(entry) {
    const info = entry?.details?.info;
    if (!info) {
      return "…";
    }
    const leftOut = leftOutHosts(info).size;
    return h("div", { class: "stack" },
      h("span", {}, `${info.hosts.length}`),
      h("span", { class: "muted small nowrap" },
        `1 master, ${info.slaves} slave${info.slaves === 1 ? "" : "s"}`
        + (leftOut ? `, ${leftOut} left out` : "")));
  }

  function buildRow(instance) {
    const entry = known.get(instance.id);
    const details = entry?.details;
    const failure = details?.status?.failure_message;
    return h("tr", { dataset: { instanceId: instance.id } },
      h("td", { "data-label": "Instance" },
        h("a", { href: instanceHash(instance.id), class: "strong", dataset: { focus: "name" } },
          instance.name)),
      h("td", { "data-label": "Status" },
        h("div", { class: "stack" },
          badge(statusOf(instance)),
          failure
            ? h("span", { class: "small error-text clamp", title: failure }, failure) : null)),
      h("td", { "data-label": "Services" },
        details
          ? h("ul", { class: "chips" },
            details.info.services.map((s) => h("li", { class: "chip" }, s)))
          : "…"),
      h("td", { "data-label": "Hosts" }, hostsCell(entry)),
      h("td", { "data-label": "Last action" }, lastActionCell(entry, instance)),
      h("td", { class: "cell-actions", "data-label": "Actions" },
        h("div", { class: "button-row" },
          actionButtons({ ...instance, info: details?.info }, navigate, { compact: true }))));
  }

  function signature(instance) {
    const entry = known.get(instance.id);
    return JSON.stringify([instance, entry?.details, entry?.lastAction,
      entry?.lastAction && ago(entry.lastAction.finished_at || entry.lastAction.created_at)]);
  }

  function render() {
    const seen = new Set();
    let previous = null;
    for (const instance of instances) {
      seen.add(instance.id);
      const sign = signature(instance);
      let current = rows.get(instance.id);
      if (!current || current.signature !== sign) {
        const row = buildRow(instance);
        if (current) {
          // Keep the keyboard's place: focus the same control in the new row.
          const focused = current.row.contains(document.activeElement)
            ? document.activeElement : null;
          current.row.replaceWith(row);
          if (focused) {
            const key = focused.dataset.action || focused.dataset.focus;
            const again = key && row.querySelector(`[data-action="${key}"], [data-focus="${key}"]`);
            (again && !again.disabled ? again : row.querySelector("a")).focus();
          }
        }
        current = { row, signature: sign };
        rows.set(instance.id, current);
      }
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (current.row !== expected) {
        tbody.insertBefore(current.row, expected);
      }
      previous = current.row;
    }
    for (const [id, { row }] of rows) {
      if (!seen.has(id)) {
        row.remove();
        rows.delete(id);
      }
    }
    applyFilter();
  }

  // The list as last read, and when; a failed refresh says so and keeps what it had.
  async function refresh() {
    try {
      await reload();
      replaceChildren(freshness, ` · updated ${formatTime(new Date().toISOString())}`);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) {
        replaceChildren(freshness, " · ", h("span", { class: "error-text" },
          `could not refresh: ${error.detail}`));
      }
      throw error;
    }
  }

  async function reload() {
    const { signal } = controller;
    instances = await listInstances(signal);
    const stale = instances.filter((instance) => {
      const entry = known.get(instance.id);
      return !entry || entry.status !== statusOf(instance)
        || (entry.lastAction && !FINISHED.includes(entry.lastAction.state));
    });
    await Promise.all(stale.map(async (instance) => {
      const [details, history] = await Promise.all([
        getInstance(instance.id, signal),
        listActions(instance.id, 1, 0, signal),
      ]);
      known.set(instance.id, {
        details,
        lastAction: history.data[0] || null,
        status: statusOf(details),
      });
      // The details are the newer read: show the status they give.
      instance.status = details.status;
    }));
    loaded = true;
    render();
  }

  const poller = poll(refresh);
  return {
    unmount() {
      poller.stop();
      controller.abort();
    },
  };
}
