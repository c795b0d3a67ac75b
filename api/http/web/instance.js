// One instance: its status, services and hosts, Start and Stop, and its history of
// actions (newest first, a page at a time), each one openable.

import { ApiError, getInstance, listActions } from "./api.js";
import {
  actionButtons,
  actionHash,
  kindWord,
  leftOutHosts,
  poll,
  statusOf,
} from "./common.js";
import { badge, formatDuration, h, replaceChildren, shortId, timeElement } from "./dom.js";

const PAGE = 10;

export function mountInstance(container, instanceId, { navigate }) {
  const controller = new AbortController();
  let offset = 0;
  let instance = null;
  let history = null;
  let lastSignature = "";

  const heading = h("h1", { id: "instance-title" }, "Instance");
  const headBadge = h("span", { id: "instance-state" });
  const buttons = h("div", { class: "button-row" });
  const failure = h("div");
  const overview = h("div");
  const hosts = h("div");
  const historyBody = h("div");

  replaceChildren(container,
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" },
      h("a", { href: "#/" }, "Instances"), h("span", { "aria-hidden": "true" }, " › "),
      h("span", { "aria-current": "page", id: "crumb-name" }, "…")),
    h("section", { "aria-labelledby": "instance-title" },
      h("div", { class: "page-head" },
        h("div", { class: "title-line" }, heading, headBadge),
        buttons),
      failure,
      h("div", { class: "grid-2" },
        h("section", { class: "card", "aria-labelledby": "overview-title" },
          h("h2", { id: "overview-title" }, "Overview"), overview),
        h("section", { class: "card card-flush", "aria-labelledby": "hosts-title" },
          h("h2", { id: "hosts-title", class: "card-title" }, "Hosts"), hosts)),
      h("section", { class: "card card-flush", "aria-labelledby": "history-title" },
        h("h2", { id: "history-title", class: "card-title" }, "History"), historyBody)));

  function renderInstance() {
    const status = statusOf(instance);
    document.title = `${instance.name} · Lambda instances`;
    heading.textContent = instance.name;
    document.getElementById("crumb-name").textContent = instance.name;
    replaceChildren(headBadge, badge(status));
    const focusedAction = buttons.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    replaceChildren(buttons, actionButtons(instance, navigate));
    if (focusedAction) {
      buttons.querySelector(`[data-action="${focusedAction}"]`)?.focus();
    }
    const message = instance.status.failure_message;
    replaceChildren(failure, message
      ? h("div", { class: "notice notice-error", role: "status" },
        h("span", { class: "notice-glyph", "aria-hidden": "true" }, "✖"),
        h("span", { class: "notice-text" }, h("strong", {}, "Last failure: "), message))
      : null);
    const info = instance.info;
    replaceChildren(overview, h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, instance.status.detail),
      h("dt", {}, "Services"), h("dd", {}, h("ul", { class: "chips" },
        info.services.map((s) => h("li", { class: "chip" }, s)))),
      h("dt", {}, "Master"), h("dd", {}, info.master_name || "—"),
      h("dt", {}, "Slaves"), h("dd", {}, String(info.slaves)),
      h("dt", {}, "Id"), h("dd", { class: "mono" }, instance.id),
      h("dt", {}, "Updated"), h("dd", {}, timeElement(info.updated_at))));
    const leftOut = leftOutHosts(info);
    replaceChildren(hosts, h("table", { class: "table", id: "hosts" },
      h("caption", { class: "sr-only" }, `Hosts of ${instance.name}`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Host"), h("th", { scope: "col" }, "Role"),
        h("th", { scope: "col" }, "Address"))),
      h("tbody", {}, info.hosts.map((host) => h("tr", { dataset: { host: host.name } },
        h("th", { scope: "row" }, h("span", { class: "mono" }, host.name),
          leftOut.has(host.name) ? [" ", badge("left_out", { small: true })] : null),
        h("td", {}, host.role),
        h("td", { class: "mono" }, host.ip))))));
  }

  function renderHistory() {
    const items = history.data;
    const total = history.pagination.count;
    if (total === 0) {
      replaceChildren(historyBody, h("p", { class: "empty" }, "No action yet."));
      return;
    }
    const older = h("button", {
      type: "button", class: "button button-small", disabled: offset + PAGE >= total,
    }, "Older");
    const newer = h("button", {
      type: "button", class: "button button-small", disabled: offset === 0,
    }, "Newer");
    older.addEventListener("click", () => { offset += PAGE; refreshHistory(); });
    newer.addEventListener("click", () => {
      offset = Math.max(0, offset - PAGE);
      refreshHistory();
    });
    replaceChildren(historyBody,
      h("table", { class: "table table-cards", id: "history" },
        h("caption", { class: "sr-only" }, "Actions of this instance, newest first"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Action"), h("th", { scope: "col" }, "Outcome"),
          h("th", { scope: "col" }, "Accepted"), h("th", { scope: "col" }, "Took"),
          h("th", { scope: "col" }, "Requested by"), h("th", { scope: "col" }, "Error"))),
        h("tbody", {}, items.map((action) => h("tr", { dataset: { actionId: action.id } },
          h("td", { "data-label": "Action" },
            h("a", { href: actionHash(instanceId, action.id), class: "strong" },
              `${kindWord(action.action)} `,
              h("span", { class: "muted mono small" }, shortId(action.id))),
            leftOutHosts(action).size
              ? h("div", { class: "muted small" },
                `left out: ${[...leftOutHosts(action)].join(", ")}`)
              : null),
          h("td", { "data-label": "Outcome" }, badge(action.state, { small: true })),
          h("td", { "data-label": "Accepted" }, timeElement(action.created_at)),
          h("td", { "data-label": "Took" }, took(action)),
          h("td", { "data-label": "Requested by", class: "mono small" },
            h("span", { title: action.requested_by }, shortId(action.requested_by))),
          h("td", { "data-label": "Error", class: "small" },
            action.error
              ? h("span", { class: "error-text clamp", title: action.error }, action.error)
              : h("span", { class: "muted" }, "—")))))),
      h("div", { class: "pager" },
        h("span", { class: "muted small" },
          `${offset + 1}–${Math.min(offset + items.length, total)} of ${total}`),
        h("div", { class: "button-row" }, newer, older)));
  }

  async function refreshHistory() {
    history = await listActions(instanceId, PAGE, offset, controller.signal);
    renderHistory();
  }

  async function refresh() {
    try {
      const [details, actions] = await Promise.all([
        getInstance(instanceId, controller.signal),
        listActions(instanceId, PAGE, offset, controller.signal),
      ]);
      const sign = JSON.stringify([details, actions]);
      if (sign === lastSignature) {
        return;
      }
      lastSignature = sign;
      instance = details;
      history = actions;
      renderInstance();
      renderHistory();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        poller.stop();
        showMissing(container, error.detail);
        return;
      }
      throw error;
    }
  }

  const poller = poll(refresh);
  return {
    unmount() {
      poller.stop();
      controller.abort();
    },
  };
}

function took(action) {
  if (!action.started_at) {
    return h("span", { class: "muted" }, "—");
  }
  const end = action.finished_at ? new Date(action.finished_at) : new Date();
  return formatDuration((end - new Date(action.started_at)) / 1000);
}

// A 404: the instance is not the caller's (or does not exist); the API says which words.
export function showMissing(container, detail) {
  document.title = "Not found · Lambda instances";
  replaceChildren(container,
    h("section", { class: "card", "aria-labelledby": "missing-title" },
      h("h1", { id: "missing-title" }, "Not found"),
      h("p", { class: "error-text", id: "missing-detail" }, detail),
      h("p", {}, h("a", { href: "#/" }, "Back to your instances"))));
  container.querySelector("h1").setAttribute("tabindex", "-1");
  container.querySelector("h1").focus();
}
