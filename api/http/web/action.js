// One action, live: its state, its steps with their elapsed time, and the playbook's
// results as a table of tasks by host, filled in from the action's event stream.
//
// The action resource gives the state so far and the number of the last event it saw
// (events.last_id); the stream then gives what comes after, and is resumed from the
// last event received whenever it drops. Cancel and Retry (a new start or stop of the
// same kind) act on it.

import { ApiError, cancelAction, getAction, getInstance, paths } from "./api.js";
import {
  FINISHED,
  allowed,
  confirmAction,
  instanceHash,
  kindWord,
  leftOutHosts,
  notify,
  poll,
  runAction,
  statusOf,
} from "./common.js";
import { showMissing } from "./instance.js";
import {
  RESULT_ORDER,
  announce,
  badge,
  formatDuration,
  h,
  replaceChildren,
  shortId,
  timeElement,
} from "./dom.js";
import { followEvents } from "./sse.js";

const STEPS = {
  start: ["power_on", "wait_ssh", "playbook", "service_checks"],
  stop: ["playbook", "power_off"],
};

function stepLabel(name, kind) {
  return {
    power_on: "Power on the VMs",
    wait_ssh: "Wait for SSH on every host",
    playbook: `Run lambda-${kind}.yml`,
    service_checks: "Check every service (lambda-check.yml)",
    power_off: "Shut down the VMs",
  }[name] || name;
}

const STREAM_LOOKS = {
  connecting: ["…", "Connecting", "idle"],
  live: ["●", "Live", "busy"],
  reconnecting: ["↻", "Reconnecting", "warn"],
  ended: ["■", "Stream ended", "idle"],
  finished: ["■", "Finished", "idle"],
};

function seconds(from, to = null) {
  return ((to ? new Date(to) : new Date()) - new Date(from)) / 1000;
}

export function mountAction(container, instanceId, actionId, { navigate }) {
  const controller = new AbortController();
  let action = null; // the resource's data, kept up to date by the events
  let instance = null; // the instance's details
  let results = []; // every task result, in order: {host, task, role, play, status, ...}
  let stream = null;
  let streamState = "connecting";
  let scheduled = false;
  let ticker = null;

  const heading = h("h1", { id: "action-title" }, "Action");
  const stateBadge = h("span", { id: "action-state" });
  const streamBadge = h("span", { class: "stream", id: "stream-state", "aria-live": "off" });
  const cancelButton = h("button", {
    type: "button", class: "button button-danger-outline", id: "cancel-action",
  }, "Cancel action");
  const retryButton = h("button", {
    type: "button", class: "button button-primary", id: "retry-action",
  }, "Retry");
  const errorBox = h("div", { id: "action-error" });
  const facts = h("div");
  const stepsList = h("ol", { class: "steps", id: "steps" });
  const hostSummary = h("ul", { class: "host-summary", id: "host-summary" });
  const taskHead = h("thead");
  const taskBody = h("tbody");
  const taskEmpty = h("p", { class: "empty", id: "tasks-empty" }, "No task has run yet.");
  const crumbInstance = h("a", { href: instanceHash(instanceId) }, "Instance");
  // Scrolls sideways by itself on a narrow screen; focusable, so a keyboard can scroll it.
  const taskScroll = h("div", {
    class: "table-scroll", role: "region", tabindex: "0", "aria-labelledby": "tasks-title",
  }, h("table", { class: "table task-table", id: "tasks" },
    h("caption", { class: "sr-only" }, "Each playbook task's result on each host"),
    taskHead, taskBody));

  replaceChildren(container,
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" },
      h("a", { href: "#/" }, "Instances"), h("span", { "aria-hidden": "true" }, " › "),
      crumbInstance, h("span", { "aria-hidden": "true" }, " › "),
      h("span", { "aria-current": "page" }, `Action ${shortId(actionId)}`)),
    h("section", { "aria-labelledby": "action-title" },
      h("div", { class: "page-head" },
        h("div", { class: "title-line" }, heading, stateBadge, streamBadge),
        h("div", { class: "button-row" }, cancelButton, retryButton)),
      errorBox,
      h("div", { class: "grid-2" },
        h("section", { class: "card", "aria-labelledby": "steps-title" },
          h("h2", { id: "steps-title" }, "Steps"), stepsList),
        h("section", { class: "card", "aria-labelledby": "facts-title" },
          h("h2", { id: "facts-title" }, "Details"), facts)),
      h("section", { class: "card card-flush", "aria-labelledby": "tasks-title" },
        h("h2", { id: "tasks-title", class: "card-title" }, "Hosts by task"),
        hostSummary,
        taskScroll,
        taskEmpty)));

  cancelButton.disabled = true;
  retryButton.disabled = true;

  // --- the model -------------------------------------------------------------------

  function finished() {
    return action !== null && FINISHED.includes(action.state);
  }

  function applyEvent(type, data) {
    if (type === "state") {
      if (data.cancel_requested_by) {
        action.cancel_requested_by = data.cancel_requested_by;
        action.cancel_requested_at = data.at;
      }
      if (data.state && data.state !== action.state) {
        action.state = data.state;
        announce(`The ${action.action} is ${data.state}.`);
      }
      if (data.state === "running") {
        action.started_at = action.started_at || data.at;
        action.attempts = Math.max(action.attempts || 0, data.attempt || 0);
        refreshInstance();
      }
      if ("error" in data) {
        action.error = data.error;
      }
      if (FINISHED.includes(data.state)) {
        action.finished_at = data.at;
      }
    } else if (type === "step") {
      const step = [...action.steps].reverse().find((s) => s.name === data.name);
      if (data.state === "running" || !step) {
        const started = data.state === "running" ? data.at
          : new Date(new Date(data.at) - (data.duration || 0) * 1000).toISOString();
        action.steps.push({
          name: data.name, state: data.state, started_at: started,
          finished_at: data.state === "running" ? null : data.at,
          duration: data.duration ?? null, message: data.message ?? null,
        });
      } else {
        Object.assign(step, {
          state: data.state, finished_at: data.at,
          duration: data.duration ?? step.duration, message: data.message ?? null,
        });
      }
      if (data.state === "failed") {
        announce(`Step ${stepLabel(data.name, action.action)} failed.`);
      }
    } else if (type === "task") {
      results.push(data);
    }
    schedule();
  }

  // --- rendering ---------------------------------------------------------------------

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        render();
      });
    }
  }

  function render() {
    if (!action) {
      return;
    }
    const name = instance ? instance.name : shortId(instanceId);
    document.title = `${kindWord(action.action)} of ${name} · Lambda instances`;
    heading.textContent = `${kindWord(action.action)} of ${name}`;
    crumbInstance.textContent = name;
    replaceChildren(stateBadge, badge(action.state));
    renderStream();
    renderButtons();
    // A cancel is the owner's doing, not a fault: told apart by more than its colour.
    const cancelled = action.state === "cancelled";
    replaceChildren(errorBox, action.error
      ? h("div", { class: `notice ${cancelled ? "notice-warn" : "notice-error"}` },
        h("span", { class: "notice-glyph", "aria-hidden": "true" }, cancelled ? "⊘" : "✖"),
        h("span", { class: "notice-text" }, action.error))
      : null);
    renderFacts();
    renderSteps();
    renderResults();
    updateTimes();
  }

  function renderStream() {
    const key = finished() && streamState !== "reconnecting" ? "finished" : streamState;
    const [glyph, word, tone] = STREAM_LOOKS[key];
    streamBadge.className = `stream stream-${tone}`;
    streamBadge.dataset.state = key;
    replaceChildren(streamBadge, h("span", { "aria-hidden": "true" }, glyph), ` ${word}`);
  }

  function renderButtons() {
    const cancelAsked = Boolean(action.cancel_requested_by);
    cancelButton.disabled = finished() || cancelAsked;
    cancelButton.textContent = cancelAsked && !finished() ? "Cancel requested" : "Cancel action";
    retryButton.textContent = `Retry ${action.action}`;
    // Retry what did not succeed (a success is followed by the instance's own buttons).
    const retryable = finished() && action.state !== "succeeded";
    retryButton.disabled = !retryable || !instance || !allowed(action.action, instance);
    retryButton.title = !retryable
      ? `Only a ${action.action} that failed or was cancelled is retried`
      : retryButton.disabled && instance
        ? `${kindWord(action.action)} is not allowed while the instance is ${statusOf(instance)}`
        : `A new ${action.action} of this instance`;
  }

  function renderFacts() {
    const items = [
      ["Action", h("span", { class: "mono" }, action.id)],
      // Newer services name who asked; the history does in any case.
      action.requested_by
        ? ["Requested by", h("span", { class: "mono" }, action.requested_by)] : null,
      ["Accepted", timeElement(action.created_at)],
      ["Started", action.started_at ? timeElement(action.started_at) : "—"],
      ["Finished", action.finished_at ? timeElement(action.finished_at) : "—"],
      ["Took", action.started_at
        ? h("span", { dataset: action.finished_at ? {} : { since: action.started_at } },
          formatDuration(seconds(action.started_at, action.finished_at)))
        : "—"],
      ["Attempts", String(action.attempts || 0)],
      leftOutHosts(action).size
        ? ["Left out", h("span", { class: "mono" }, [...leftOutHosts(action)].join(", "))] : null,
      ["Instance", instance ? badge(statusOf(instance), { small: true }) : "…"],
    ];
    if (action.cancel_requested_by) {
      items.push(["Cancel asked by", h("span", { class: "mono" }, action.cancel_requested_by)]);
    }
    replaceChildren(facts, h("dl", { class: "facts", id: "facts" },
      items.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])));
  }

  function renderSteps() {
    const names = [...STEPS[action.action] || []];
    for (const step of action.steps) {
      if (!names.includes(step.name)) {
        names.push(step.name);
      }
    }
    replaceChildren(stepsList, names.map((name) => {
      const step = [...action.steps].reverse().find((s) => s.name === name);
      const state = step ? step.state : (finished() ? "skipped" : "pending");
      let time = "";
      if (step && step.state === "running" && step.started_at) {
        time = h("span", { class: "step-time", dataset: { since: step.started_at } },
          formatDuration(seconds(step.started_at)));
      } else if (step && step.duration !== null && step.duration !== undefined) {
        time = h("span", { class: "step-time" }, formatDuration(step.duration));
      }
      return h("li", { class: `step step-${state}`, dataset: { step: name, state } },
        h("div", { class: "step-line" },
          h("span", { class: "step-name" }, stepLabel(name, action.action)),
          h("span", { class: "step-state" },
            badge(state, {
              small: true, label: step ? null : (finished() ? "Not run" : "Pending"),
            }),
            time)),
        step && step.message ? h("p", { class: "step-message" }, step.message) : null);
    }));
  }

  function hostOrder() {
    const names = instance ? instance.info.hosts.map((host) => host.name) : [];
    for (const result of results) {
      if (!names.includes(result.host)) {
        names.push(result.host);
      }
    }
    return names;
  }

  function renderResults() {
    const hosts = hostOrder();
    const roles = new Map((instance ? instance.info.hosts : [])
      .map((host) => [host.name, host.role]));
    const leftOut = leftOutHosts(action); // what this action left out, not the instance now
    const counts = new Map(hosts.map((host) => [host, {}]));
    // One row per task of a play (a task name may recur in another play), in the order
    // they first ran; a later result of the same task on the same host (a second
    // attempt) replaces the first.
    const rows = new Map(); // play + task -> {task, role, play, cells: Map host -> result}
    for (const result of results) {
      const count = counts.get(result.host);
      count[result.status] = (count[result.status] || 0) + 1;
      const key = `${result.play || result.role || ""}\n${result.task}`;
      let row = rows.get(key);
      if (!row) {
        row = { task: result.task, role: result.role, play: result.play, cells: new Map() };
        rows.set(key, row);
      }
      row.cells.set(result.host, result);
    }

    replaceChildren(hostSummary, hosts.map((host) => {
      const count = counts.get(host);
      const parts = RESULT_ORDER.filter((status) => count[status])
        .map((status) => h("li", { class: `count count-${status}` }, badge(status, {
          small: true, label: `${count[status]} ${status}`,
        })));
      return h("li", { class: "host-card", dataset: { host } },
        h("div", { class: "host-name" }, h("span", { class: "mono" }, host),
          roles.get(host) ? h("span", { class: "muted small" }, ` ${roles.get(host)}`) : null),
        leftOut.has(host)
          ? badge("left_out", { small: true, label: "left out of this action" })
          : h("ul", { class: "counts" }, parts.length ? parts
            : h("li", { class: "muted small" }, finished() ? "no result" : "no result yet")));
    }));

    replaceChildren(taskHead, h("tr", {},
      h("th", { scope: "col" }, "Task"),
      hosts.map((host) => h("th", { scope: "col", dataset: { host } },
        h("span", { class: "mono" }, host),
        leftOut.has(host) ? h("span", { class: "small muted" }, " (left out)") : null))));
    // One group of rows per play ("Start the HDFS NameNode"), in the order they ran.
    const body = [];
    let play;
    for (const row of rows.values()) {
      const group = row.play || row.role || "";
      if (group !== play) {
        play = group;
        body.push(h("tr", { class: "play-row" },
          h("th", { scope: "colgroup", colspan: hosts.length + 1 }, group || "Tasks")));
      }
      body.push(h("tr", { dataset: { task: row.task } },
        h("th", { scope: "row", class: "task-name" }, row.task),
        hosts.map((host) => resultCell(row.cells.get(host), host, leftOut))));
    }
    replaceChildren(taskBody, body);
    taskEmpty.hidden = rows.size > 0;
    taskScroll.hidden = rows.size === 0;
    taskEmpty.textContent = finished() ? "No playbook task ran." : "No task has run yet.";
  }

  function resultCell(result, host, leftOut) {
    if (!result) {
      const word = leftOut.has(host) ? "left out" : "no result";
      return h("td", { class: "cell-none", dataset: { host } },
        h("span", { "aria-hidden": "true" }, "—"), h("span", { class: "sr-only" }, word));
    }
    const failedHere = result.status === "failed" || result.status === "unreachable";
    return h("td", { dataset: { host, status: result.status }, title: result.message || "" },
      badge(result.status, { small: true, label: result.status }), // as Ansible writes it
      failedHere && result.message ? h("p", { class: "cell-message" }, result.message) : null);
  }

  // The running step's and the action's elapsed time, every second.
  function updateTimes() {
    for (const element of container.querySelectorAll("[data-since]")) {
      element.textContent = formatDuration(seconds(element.dataset.since));
    }
  }

  // --- loading and following ---------------------------------------------------------

  async function refreshInstance() {
    try {
      instance = await getInstance(instanceId, controller.signal);
      schedule();
    } catch (error) {
      if (!(error instanceof ApiError) && error.name !== "AbortError") {
        throw error;
      }
    }
  }

  async function load() {
    const [data, details] = await Promise.all([
      getAction(instanceId, actionId, controller.signal),
      getInstance(instanceId, controller.signal),
    ]);
    action = { ...data, steps: data.steps.map((step) => ({ ...step })) };
    instance = details;
    results = data.playbook.tasks.map((task) => ({ ...task }));
    return data.events ? data.events.last_id : 0;
  }

  async function start() {
    let lastId;
    try {
      lastId = await load();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        showMissing(container, error.detail);
        return;
      }
      if (error instanceof ApiError && error.status !== 401) {
        notify("error", error.detail);
      }
      return;
    }
    render();
    if (finished()) {
      streamState = "ended";
      startInstancePolling();
      schedule();
      return;
    }
    ticker = setInterval(updateTimes, 1000);
    stream = followEvents(paths.events(instanceId, actionId), lastId, {
      onEvent: (type, data) => applyEvent(type, data),
      onStatus: (state) => {
        streamState = state;
        schedule();
        if (state === "ended") {
          // The final word: times, the instance's new status.
          clearInterval(ticker);
          ticker = null;
          reloadAfterEnd();
        }
      },
      onError: (error) => {
        streamState = "ended";
        schedule();
        if (error.status !== 401) {
          notify("error", `The event stream stopped: ${error.detail}`);
        }
      },
      isFinished: finished,
    });
  }

  async function reloadAfterEnd() {
    try {
      await load();
    } catch (error) {
      if (!(error instanceof ApiError) && error.name !== "AbortError") {
        throw error;
      }
    }
    schedule();
    startInstancePolling();
  }

  let instancePoller = null;
  function startInstancePolling() {
    if (!instancePoller) {
      // Retry depends on the instance's status, which other actions may change.
      instancePoller = poll(async () => {
        instance = await getInstance(instanceId, controller.signal);
        schedule();
      });
    }
  }

  cancelButton.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Cancel this ${action.action}?`,
      text: "The step under way is stopped where it is (the playbook is killed) and no "
        + "further step starts. The instance is left FAILED; start or stop it again to "
        + "converge.",
      yes: "Cancel action",
      no: "Let it run",
    });
    if (!ok) {
      return;
    }
    cancelButton.disabled = true;
    try {
      const answer = await cancelAction(instanceId, actionId);
      action.cancel_requested_by = answer.cancel_requested_by;
      action.cancel_requested_at = answer.cancel_requested_at;
      if (FINISHED.includes(answer.state)) {
        action.state = answer.state;
      }
      announce(`Cancel of the ${action.action} requested.`);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) {
        notify("error", `Could not cancel: ${error.detail}`);
      }
    }
    schedule();
  });

  retryButton.addEventListener("click", async () => {
    retryButton.disabled = true;
    await runAction(instance, action.action, navigate, [...leftOutHosts(action)]);
    schedule();
  });

  start();
  return {
    unmount() {
      controller.abort();
      if (stream) {
        stream.close();
      }
      if (ticker) {
        clearInterval(ticker);
      }
      if (instancePoller) {
        instancePoller.stop();
      }
    },
  };
}
