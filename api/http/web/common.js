// What the views share: the action rules, notices, the confirmation dialog, polling,
// and starting or stopping an instance.

import { ApiError, requestAction } from "./api.js";
import { announce, h } from "./dom.js";

// The service's ACTION_RULES (api/domain/model.py): from which statuses each action is
// allowed. The server decides; the page only leaves a button off when it would refuse.
export const ALLOWED_FROM = {
  start: ["STOPPED", "FAILED"],
  stop: ["STARTED", "FAILED"],
};

// A start is also allowed from STARTED while the instance has hosts left out: it brings
// them back.
export const BRINGS_BACK_LEFT_OUT = {
  start: "STARTED",
};

export const FINISHED = ["succeeded", "failed", "cancelled"];

export const POLL_MS = 5000;

// Whether the service would accept `kind` for `instance` (its status, and its
// info.left_out_hosts when known).
export function allowed(kind, instance) {
  const status = statusOf(instance);
  if (ALLOWED_FROM[kind].includes(status)) {
    return true;
  }
  return BRINGS_BACK_LEFT_OUT[kind] === status && leftOutHosts(instance.info).size > 0;
}

function notAllowedReason(kind, instance) {
  const from = ALLOWED_FROM[kind].join(" or ");
  return BRINGS_BACK_LEFT_OUT[kind]
    ? `${kindWord(kind)} is allowed from ${from}, or from ${BRINGS_BACK_LEFT_OUT[kind]} `
      + "to bring left-out hosts back"
    : `${kindWord(kind)} is allowed from ${from}`;
}

export function statusOf(instance) {
  return instance && instance.status ? instance.status.message : null;
}

export function instanceHash(id) {
  return `#/instances/${encodeURIComponent(id)}`;
}

export function actionHash(id, actionId) {
  return `${instanceHash(id)}/actions/${encodeURIComponent(actionId)}`;
}

// A message above the view: errors are alerts, the rest polite; each can be dismissed.
export function notify(kind, text) {
  const list = document.getElementById("notices");
  const role = kind === "error" ? "alert" : "status";
  const item = h("div", { class: `notice notice-${kind}`, role },
    h("span", { class: "notice-glyph", "aria-hidden": "true" }, kind === "error" ? "✖" : "ℹ"),
    h("span", { class: "notice-text" }, text),
    h("button", {
      type: "button",
      class: "notice-close",
      "aria-label": "Dismiss this message",
      onclick: () => item.remove(),
    }, "×"));
  list.append(item);
  return item;
}

export function clearNotices() {
  document.getElementById("notices").replaceChildren();
}

// Ask before something that cannot be taken back. Resolves to true or false.
export function confirmAction({ title, text, yes, no = "Keep it running" }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const yesButton = document.getElementById("confirm-yes");
  const noButton = document.getElementById("confirm-no");
  yesButton.textContent = yes;
  noButton.textContent = no;
  return new Promise((resolve) => {
    const done = (answer) => {
      yesButton.removeEventListener("click", onYes);
      noButton.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onNo);
      if (dialog.open) {
        dialog.close();
      }
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yesButton.addEventListener("click", onYes);
    noButton.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onNo); // Escape
    dialog.showModal();
    noButton.focus(); // the safe choice first
  });
}

// Run `task` now and every `ms` after it ends, while the tab is visible; stop() ends it.
export function poll(task, ms = POLL_MS) {
  let timer = null;
  let stopped = false;
  let running = false;

  async function tick() {
    timer = null;
    if (stopped || running) {
      return;
    }
    if (document.hidden) {
      return; // picked up again by visibilitychange
    }
    running = true;
    try {
      await task();
    } catch (error) {
      if (!(error instanceof ApiError) && error.name !== "AbortError") {
        console.error("refresh failed:", error.message);
      }
    } finally {
      running = false;
    }
    if (!stopped && timer === null) {
      timer = setTimeout(tick, ms);
    }
  }

  function onVisibility() {
    if (!document.hidden && timer === null && !running) {
      tick();
    }
  }

  document.addEventListener("visibilitychange", onVisibility);
  tick();
  return {
    now() {
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
      tick();
    },
    stop() {
      stopped = true;
      if (timer !== null) {
        clearTimeout(timer);
      }
      document.removeEventListener("visibilitychange", onVisibility);
    },
  };
}

const KIND_WORDS = { start: "Start", stop: "Stop" };

export function kindWord(kind) {
  return KIND_WORDS[kind] || kind;
}

// Start or stop an instance (stop asks first), then open the new action. A refusal
// (409, 400...) is shown as the contract's message. `exclude`: the slaves a start leaves
// out (a retry keeps those of the action it retries).
export async function runAction(instance, kind, navigate, exclude = []) {
  if (kind === "stop") {
    const ok = await confirmAction({
      title: `Stop ${instance.name}?`,
      text: "Its services (HDFS, YARN, ZooKeeper, Kafka, Spark) are stopped and its VMs "
        + "shut down. Running jobs are interrupted.",
      yes: "Stop instance",
      no: "Keep it running",
    });
    if (!ok) {
      return null;
    }
  }
  try {
    const action = await requestAction(instance.id, kind, exclude);
    announce(`${kindWord(kind)} of ${instance.name} accepted.`);
    navigate(actionHash(instance.id, action.id));
    return action;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) {
      notify("error", `Could not ${kind} ${instance.name}: ${error.detail}`);
      return null;
    }
    throw error;
  }
}

// The Start and Stop buttons of an instance, enabled when its status allows them.
export function actionButtons(instance, navigate, { compact = false } = {}) {
  return ["start", "stop"].map((kind) => {
    const enabled = allowed(kind, instance);
    const bringsBack = enabled && kind === "start" && statusOf(instance) === "STARTED";
    const button = h("button", {
      type: "button",
      class: `button ${kind === "start" ? "button-primary" : "button-danger-outline"}`
        + `${compact ? " button-small" : ""}`,
      disabled: !enabled,
      dataset: { action: kind },
      "aria-label": `${kindWord(kind)} ${instance.name}`,
      title: !enabled ? notAllowedReason(kind, instance)
        : bringsBack ? `Start the left-out hosts of ${instance.name} again`
          : `${kindWord(kind)} ${instance.name}`,
    }, kindWord(kind));
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await runAction(instance, kind, navigate);
      } finally {
        if (button.isConnected) {
          button.disabled = !allowed(kind, instance);
        }
      }
    });
    return button;
  });
}

// The hosts left out: of an instance (its info's left_out_hosts, once a start that left
// them out succeeded) or of an action (the excluded_hosts its start named). Read
// defensively: a service older than the page has neither.
export function leftOutHosts(source) {
  const names = new Set();
  for (const key of ["left_out_hosts", "excluded_hosts"]) {
    const value = source ? source[key] : null;
    if (Array.isArray(value)) {
      for (const name of value) {
        if (typeof name === "string" && name) {
          names.add(name);
        }
      }
    }
  }
  return names;
}
