// The operator's page: sign-in, then three views chosen by the URL's fragment:
//   #/                                    the instances
//   #/instances/{id}                      one instance and its history
//   #/instances/{id}/actions/{action_id}  one action, live
// The fragment holds ids only; the token is in sessionStorage (see api.js).
// ES modules run in strict mode.

import {
  ApiError, forgetToken, getToken, onUnauthorized, paths, request, setToken,
} from "./api.js";
import { mountAction } from "./action.js";
import { clearNotices, notify } from "./common.js";
import { announce, h, replaceChildren } from "./dom.js";
import { mountInstance } from "./instance.js";
import { mountInstances } from "./instances.js";

const view = document.getElementById("view");
const session = document.getElementById("session");
const userName = document.getElementById("user-name");
let current = null; // the mounted view: {unmount()}

function navigate(hash) {
  if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

function unmount() {
  if (current) {
    current.unmount();
    current = null;
  }
}

function route() {
  unmount();
  if (!getToken()) {
    showSignIn();
    return;
  }
  session.hidden = false;
  if (!userName.textContent) {
    showUserName();
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean)
    .map(decodeURIComponent);
  const context = { navigate };
  if (parts[0] === "instances" && parts.length === 2) {
    current = mountInstance(view, parts[1], context);
  } else if (parts[0] === "instances" && parts[2] === "actions" && parts.length === 4) {
    current = mountAction(view, parts[1], parts[3], context);
  } else {
    current = mountInstances(view, context);
  }
  // Move the focus to the new view's heading, for keyboards and screen readers.
  const heading = view.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

async function showUserName() {
  try {
    const { body } = await request("GET", paths.authenticate());
    userName.textContent = body.data.name;
  } catch {
    // A 401 signs out (the handler); anything else leaves the name blank.
  }
}

function showSignIn(message) {
  session.hidden = true;
  userName.textContent = "";
  document.title = "Sign in · Lambda instances";
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const error = h("p", { class: "form-error", id: "sign-in-error", role: "alert" });
  const button = h("button", { type: "submit", class: "button button-primary" }, "Sign in");
  const form = h("form", { class: "sign-in-form", novalidate: true },
    h("label", { for: "token" }, "Access token"),
    input,
    h("p", { class: "help", id: "token-help" },
      "Your ~okeanos (Astakos) API token. It is kept in this tab only and forgotten when "
      + "you sign out or close the tab."),
    error,
    button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    error.textContent = "";
    if (!token) {
      error.textContent = "Enter your access token.";
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const { body } = await request("GET", paths.authenticate(), { token });
      setToken(token);
      input.value = "";
      userName.textContent = body.data.name;
      announce(`Signed in as ${body.data.name}.`);
      route();
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.detail : "Could not sign in.";
      input.select();
      input.focus();
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
  replaceChildren(view,
    h("section", { class: "sign-in card", "aria-labelledby": "sign-in-title" },
      h("h1", { id: "sign-in-title" }, "Sign in"),
      h("p", { class: "lead" },
        "Start, stop and follow your lambda instances: Hadoop, Spark and Kafka clusters."),
      message ? h("p", { class: "notice notice-info", role: "status" }, message) : null,
      form));
  input.focus();
}

function signOut(message) {
  unmount();
  forgetToken();
  clearNotices();
  showSignIn(message);
  announce(message || "Signed out.");
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut("You have signed out.");
});

onUnauthorized(() => {
  if (getToken()) { // once, however many requests were refused
    signOut("The service no longer accepts your token: sign in again.");
  }
});

window.addEventListener("hashchange", () => {
  clearNotices();
  route();
});

route();
