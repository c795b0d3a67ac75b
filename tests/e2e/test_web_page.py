"""The operator's web page in a real browser: Debian's headless chromium, driven by
Selenium through Debian's chromedriver (``/usr/bin/chromedriver``; Selenium never
downloads one), against the real server with the demo's seed and the stand-ins (the
``product`` fixture).

One browser session walks an operator's path: a wrong token refused; sign-in; the
instances (another user's never shown, not even by its address); the list following a
change made elsewhere without a reload; a start watched live until STARTED, through a
restart of the server in the middle (the page's event stream reconnects and resumes);
a stop, asked twice; a cancel refused with the contract's 409 once the action has
ended; a start cancelled, retried and cancelled again; the history, one past action
opened; sign-out. Each state is saved as a screenshot under the test's directory (and
in ``$LAMBDA_TEST_ARTIFACTS/web-page/`` when that is set).

``scripts/install-browser-deps.sh`` (``make browser-deps``, run by ``make test``)
installs the browser; where it is missing the test skips, unless
``LAMBDA_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from lambda_testbed.demo_data import DEMO_USER_NAME, OTHER_INSTANCE_ID
from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SECOND_INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-000000000002"  # the seed's demo-instance-2
INVALID_TOKEN_DETAIL = "Unauthorized. Request failed because user provided an invalid token."
NOT_FOUND_DETAIL = "The specified lambda instance doesn't exist."
DESKTOP = (1280, 900)
PHONE_WIDTH = 360
ACTION_TIMEOUT = 180  # a demo start takes 20-40 s; a restart in the middle adds its own


def _missing_browser() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return ", ".join(missing) or None


@pytest.fixture
def browser(tmp_path, monkeypatch):
    missing = _missing_browser()
    if missing:
        message = (f"no headless browser: {missing} missing "
                   "(scripts/install-browser-deps.sh installs it)")
        if os.environ.get("LAMBDA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message} (LAMBDA_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, if asked, looks up nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}",
                     "--no-first-run", "--no-default-browser-check",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-default-apps", "--disable-extensions",
                     "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(*DESKTOP)
    try:
        yield driver
    finally:
        driver.quit()


class Screenshots:
    """Full-page screenshots, numbered in the order taken, kept as test artifacts."""

    def __init__(self, driver, directory: Path):
        self.driver = driver
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.count = 0
        artifacts = os.environ.get("LAMBDA_TEST_ARTIFACTS")
        self.copy_to = Path(artifacts) / "web-page" if artifacts else None

    def take(self, name: str, whole_page: bool = True) -> Path:
        self.count += 1
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": whole_page})
        path = self.directory / f"{self.count:02d}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        if self.copy_to is not None:
            self.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, self.copy_to / path.name)
        return path


class Page:
    """The page as a user sees it: waits on what is shown, never on the clock alone."""

    def __init__(self, driver, base: str):
        self.driver = driver
        self.base = base

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, condition, timeout: float = 30, message: str = ""):
        """Poll ``condition()`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as exc:  # an element replaced between two reads: try again
                last_error = exc
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {message or condition}: {last_error}; "
                             f"page text: {self.text('main')[:2000]}")

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        elements = self.find_all(css)
        return elements[0].text if elements else ""

    def state(self, css: str) -> str | None:
        """The ``data-state`` of the first badge inside ``css`` (the state it shows)."""
        return self.js("const e = document.querySelector(arguments[0]);"
                       "return e ? e.dataset.state : null;", f"{css} .badge")

    def click(self, css: str) -> None:
        """Click ``css`` once it is there and enabled (a refresh may replace the element
        between two reads: then the new one is clicked)."""
        def clicked():
            element = self.find(css)
            if not element.is_enabled():
                return False
            element.click()
            return True
        self.wait(clicked, message=f"{css} enabled")

    def hash_(self) -> str:
        return self.js("return location.hash")

    def token_in_tab(self) -> str | None:
        return self.js("return sessionStorage.getItem('lambda.token')")

    def row(self, instance_id: str) -> str:
        return f'#instances tr[data-instance-id="{instance_id}"]'

    def action_id(self) -> str:
        return self.hash_().rsplit("/actions/", 1)[1]

    def wait_action_view(self, previous: str | None = None) -> str:
        """Wait until an action's view shows a state; return the action's id."""
        self.wait(lambda: "/actions/" in self.hash_()
                  and (previous is None or self.action_id() != previous)
                  and self.state("#action-state"), message="an action's view")
        return self.action_id()

    def wait_action_state(self, wanted: set[str], timeout: float = ACTION_TIMEOUT) -> str:
        return self.wait(lambda: self.state("#action-state") in wanted and
                         self.state("#action-state"), timeout, f"the action {wanted}")

    def task_cells(self) -> list[tuple[str, str, str]]:
        """(task, host, result) of every filled cell of the hosts-by-task table."""
        return [tuple(cell) for cell in self.js("""
            return [...document.querySelectorAll('#tasks tbody tr[data-task]')].flatMap(
              (row) => [...row.querySelectorAll('td[data-status]')].map(
                (td) => [row.dataset.task, td.dataset.host, td.dataset.status]));""")]

    def summary_total(self) -> int:
        """The task results the hosts' summary counts, all hosts together."""
        return self.js("""
            let total = 0;
            for (const b of document.querySelectorAll('#host-summary .counts .badge-text')) {
              total += Number.parseInt(b.textContent, 10);
            }
            return total;""")

    def confirm(self, yes: bool) -> None:
        self.wait(lambda: self.js("return document.getElementById('confirm').open"),
                  message="the confirmation dialog")
        self.click("#confirm-yes" if yes else "#confirm-no")
        self.wait(lambda: not self.js("return document.getElementById('confirm').open"),
                  message="the dialog closed")

    def no_overflow_at(self, width: int) -> int:
        """Lay the page out at ``width`` CSS pixels (a phone); the document's width."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 780, "deviceScaleFactor": 1, "mobile": True})
        time.sleep(0.3)  # one layout
        return self.js("return document.documentElement.scrollWidth")

    def desktop(self) -> None:
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _history(product, instance_id: str) -> list[dict]:
    resp = product.call("GET", f"/api/lambda-instances/{instance_id}/actions/?limit=50")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def test_an_operator_signs_in_starts_watches_stops_cancels_and_signs_out(
        product, browser, tmp_path):
    page = Page(browser, product.base)
    shots = Screenshots(browser, tmp_path / "screenshots")

    # The address the demo prints leads to the page.
    browser.get(product.base + "/")
    page.wait(lambda: page.find_all("#token"), message="the sign-in form")
    assert browser.current_url == product.base + "/ui/"

    # A wrong token is refused with the contract's words, and not kept.
    page.find("#token").send_keys("not-a-valid-token")
    page.find("form button[type=submit]").click()
    page.wait(lambda: page.text("#sign-in-error") == INVALID_TOKEN_DETAIL,
              message="the refusal")
    assert page.token_in_tab() is None
    shots.take("wrong-token")

    # The demo's token: the user's instances, and only theirs.
    page.find("#token").clear()
    page.find("#token").send_keys(DEMO_TOKEN)
    page.find("form button[type=submit]").click()
    page.wait(lambda: page.find_all(page.row(DEMO_INSTANCE_ID)), message="the instances")
    page.wait(lambda: page.text("#user-name") == DEMO_USER_NAME, message="the user's name")
    page.wait(lambda: "hdfs" in page.text(page.row(DEMO_INSTANCE_ID)),
              message="the instance's services")
    names = [row.find_element("css selector", "td a").text
             for row in page.find_all("#instances tbody tr")]
    assert names == ["demo-instance-1", "demo-instance-2"]
    assert OTHER_INSTANCE_ID not in browser.page_source
    assert "someone-elses" not in browser.page_source
    assert page.token_in_tab() == DEMO_TOKEN
    assert DEMO_TOKEN not in browser.current_url
    assert page.state(f"{page.row(DEMO_INSTANCE_ID)} td[data-label=Status]") == "STOPPED"
    assert page.find(f"{page.row(DEMO_INSTANCE_ID)} button[data-action=start]").is_enabled()
    assert not page.find(f"{page.row(DEMO_INSTANCE_ID)} button[data-action=stop]").is_enabled()
    shots.take("instances")

    # The filter.
    page.find("#filter").send_keys("instance-2")
    page.wait(lambda: not page.find(page.row(DEMO_INSTANCE_ID)).is_displayed(),
              message="the filter")
    assert page.find(page.row(SECOND_INSTANCE_ID)).is_displayed()
    page.find("#filter").clear()
    page.find("#filter").send_keys(" ")  # an input event: the filter is re-applied
    page.wait(lambda: page.find(page.row(DEMO_INSTANCE_ID)).is_displayed(),
              message="the filter cleared")

    # A change made elsewhere (curl) shows without a reload: a start, cancelled at once.
    page.js("window.notReloaded = true")
    started = product.call("POST", f"/api/lambda-instances/{SECOND_INSTANCE_ID}/",
                           json={"action": "start"})
    assert started.status_code == 202, started.text
    cancelled = product.call("POST", started.headers["Location"] + "/cancel")
    assert cancelled.status_code == 202, cancelled.text
    second = page.row(SECOND_INSTANCE_ID)
    page.wait(lambda: page.state(f"{second} td[data-label=Status]") == "FAILED"
              and page.state(f'{second} td[data-label="Last action"]') == "cancelled",
              timeout=60, message="the list updated")
    assert page.js("return window.notReloaded === true")

    # Another user's instance: not even its address shows it.
    browser.get(f"{product.base}/ui/#/instances/{OTHER_INSTANCE_ID}")
    page.wait(lambda: page.text("#missing-detail") == NOT_FOUND_DETAIL, message="the 404")
    assert "someone-elses" not in browser.page_source
    shots.take("another-users-instance")

    # Start, watched live: the steps and the host table fill in until STARTED.
    page.find("a.brand").click()
    page.click(f"{page.row(DEMO_INSTANCE_ID)} button[data-action=start]")
    start_id = page.wait_action_view()
    page.wait(lambda: page.task_cells() and page.state("#action-state") == "running",
              timeout=ACTION_TIMEOUT, message="task results while the start runs")
    assert page.state("#steps li[data-step=power_on]") == "succeeded"
    assert page.js("return document.getElementById('stream-state').dataset.state") == "live"
    shots.take("start-running")

    # The server restarts in the middle: the stream reconnects from its last event.
    product.stop()
    product.start()
    page.wait(lambda: len(page.find_all("#tasks tbody tr[data-task]")) >= 10
              or page.state("#action-state") != "running",
              timeout=ACTION_TIMEOUT, message="more task results")
    shots.take("start-running-after-a-server-restart")
    page.wait_action_state({"succeeded", "failed", "cancelled"})
    assert page.state("#action-state") == "succeeded", page.text("#action-error")
    page.wait(lambda: page.state("#facts") == "STARTED", message="the instance STARTED")
    for step in ("power_on", "playbook"):
        assert page.state(f"#steps li[data-step={step}]") == "succeeded"
    action = product.call("GET", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/actions/"
                          f"{start_id}").json()["data"]
    assert all(task["play"] for task in action["playbook"]["tasks"])  # the table's groups
    # Every result the service recorded is on the page, once.
    page.wait(lambda: page.summary_total() == len(action["playbook"]["tasks"]),
              message="every task result counted")
    hosts = {host for _, host, _ in page.task_cells()}
    assert hosts == {"lambda-1-master", "lambda-1-slave-1", "lambda-1-slave-2"}
    assert {result for _, _, result in page.task_cells()} <= {"ok", "changed", "skipped"}
    assert not page.find("#cancel-action").is_enabled()
    assert not page.find("#retry-action").is_enabled()  # start is not allowed from STARTED
    shots.take("start-succeeded")
    # At a phone's width: nothing wider than the screen but the table's own scroll area.
    assert page.no_overflow_at(PHONE_WIDTH) <= PHONE_WIDTH
    shots.take("start-succeeded-360px", whole_page=False)
    page.desktop()

    # Stop asks first: "no" leaves the instance alone.
    page.find("nav.breadcrumbs a").click()
    page.click(f"{page.row(DEMO_INSTANCE_ID)} button[data-action=stop]")
    page.confirm(yes=False)
    assert len(_history(product, DEMO_INSTANCE_ID)) == 1
    page.click(f"{page.row(DEMO_INSTANCE_ID)} button[data-action=stop]")
    page.confirm(yes=True)
    stop_id = page.wait_action_view()
    assert page.text("#action-title") == "Stop of demo-instance-1"

    # A cancel that arrives after the end: the contract's 409, shown, not a crash.
    page.click("#cancel-action")
    page.wait(lambda: page.js("return document.getElementById('confirm').open"),
              message="the cancel's dialog")
    product.wait_action(f"/api/lambda-instances/{DEMO_INSTANCE_ID}/actions/{stop_id}")
    page.confirm(yes=True)
    page.wait(lambda: "The action has already ended (succeeded)." in page.text("#notices"),
              message="the 409's message")
    page.wait_action_state({"succeeded"})
    page.wait(lambda: page.state("#facts") == "STOPPED", message="the instance STOPPED")
    shots.take("stop-succeeded-late-cancel-refused")

    # Cancel a start; retry it (a new start), and cancel that one too.
    page.find("nav.breadcrumbs a[href^='#/instances/']").click()
    page.wait(lambda: page.state("#instance-state") == "STOPPED", message="the instance")
    page.click("button[data-action=start]")
    first_start = page.wait_action_view(previous=stop_id)
    page.click("#cancel-action")
    page.confirm(yes=True)
    page.wait_action_state({"cancelled"})
    page.wait(lambda: "cancelled by" in page.text("#action-error"), message="the error")
    page.wait(lambda: page.state("#facts") == "FAILED", message="the instance FAILED")
    shots.take("start-cancelled")
    page.click("#retry-action")
    retried = page.wait_action_view(previous=first_start)
    assert page.text("#action-title") == "Start of demo-instance-1"
    page.click("#cancel-action")
    page.confirm(yes=True)
    page.wait_action_state({"cancelled"})

    # The history, newest first; the first start opened again, as it ended.
    page.find("nav.breadcrumbs a[href^='#/instances/']").click()
    page.wait(lambda: len(page.find_all("#history tbody tr")) == 4, message="the history")
    ids = [row.get_attribute("data-action-id") for row in page.find_all("#history tbody tr")]
    assert ids == [retried, first_start, stop_id, start_id]
    shots.take("history")
    page.click(f'#history tr[data-action-id="{start_id}"] a')
    page.wait(lambda: page.state("#action-state") == "succeeded" and page.task_cells(),
              message="the first start, from the history")
    assert page.summary_total() == len(action["playbook"]["tasks"])

    # Sign out: the token is forgotten.
    page.click("#sign-out")
    page.wait(lambda: page.find_all("#token"), message="the sign-in form again")
    assert page.token_in_tab() is None
    shots.take("signed-out")

    # No script or style was refused, nothing was fetched from elsewhere, and the
    # token never reached the console.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Refused" in m]
    assert not [m for m in console if DEMO_TOKEN in m]
    fetched = page.js("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert fetched and all(url.startswith(product.base + "/") for url in fetched)
