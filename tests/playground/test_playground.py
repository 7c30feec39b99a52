"""The policy playground in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver.

Run by tests/tests/playground.rs (`make e2e`), which serves target/playground/ (`make playground-build`) and writes the
spec this script reads: what `agent-iam test --json` says of every example's cases, requests `agent-iam check --json`
decided with a whole configuration and a token, and an invalid configuration with the path `agent-iam validate`
names. The script checks the page against them and prints one JSON report on stdout:

    {"checks": [{"name", "ok", "detail"}], "first_decision_ms", "examples": {...}, "screenshots": [...],
     "console": [...]}

It asserts nothing itself (the Rust test does); it exits 0 when it could run, 2 when it could not start the browser.

    python test_playground.py --url http://127.0.0.1:PORT/ --spec spec.json --screenshots DIR
"""

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30


class Run:
    def __init__(self, driver, url, shots):
        self.driver = driver
        self.url = url
        self.shots = shots
        self.checks = []
        self.console = []
        self.screenshots = []

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def check(self, name, ok, detail=""):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail if isinstance(detail, str) else json.dumps(detail)})
        return ok

    def logs(self):
        """Drains the browser's console log (Selenium hands each entry over once)."""
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            entries = []
        self.console.extend(entries)
        return entries

    def shot(self, name):
        """The whole page, not only the window (Chromium's DevTools protocol), else the window."""
        path = os.path.join(self.shots, name)
        try:
            size = self.js("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            data = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True,
                 "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}},
            )["data"]
            with open(path, "wb") as f:
                f.write(base64.b64decode(data))
        except WebDriverException:
            self.driver.save_screenshot(path)
        self.screenshots.append(path)

    # -- the page ---------------------------------------------------------------------------------------------

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, what, predicate, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(lambda d: predicate())
        except TimeoutException:
            raise TimeoutException(f"timed out waiting for {what}") from None

    def load(self, url=None):
        self.driver.get(url or self.url)
        self.wait("the engine", lambda: self.js("return document.body.dataset.ready === 'true'"))
        self.wait("the first decision", lambda: self.seq() > 0)

    def seq(self):
        return int(self.js("return Number(document.getElementById('decision').dataset.seq || 0)"))

    def decision(self):
        return self.js(
            """
            const d = document.getElementById('decision');
            const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')]
                .map((tr) => [tr.cells[0] ? tr.cells[0].textContent : tr.querySelector('th').textContent,
                              tr.querySelector('td').textContent]);
            return {decision: d.dataset.decision, status: d.dataset.status, rule: d.dataset.rule || null,
                    body: document.getElementById('response-body').textContent,
                    response_headers: rows('response-headers'), forwarded: rows('forwarded-set'),
                    candidates: [...document.querySelectorAll('#explanation .candidate')]
                        .map((li) => [li.dataset.id, li.dataset.result]),
                    errors: document.getElementById('decide-error').textContent.trim()};
            """
        )

    def set_fields(self, values):
        """Sets editors and fields by id as typing would (an input event each), in one go; waits for the decision
        that follows and returns it."""
        before = self.seq()
        self.js(
            """
            for (const [id, value] of Object.entries(arguments[0])) {
                const node = document.getElementById(id);
                node.value = value;
                node.dispatchEvent(new Event('input', {bubbles: true}));
            }
            """,
            values,
        )
        self.wait(f"a decision after setting {sorted(values)}", lambda: self.seq() > before)
        return self.decision()

    def click_label(self, input_id):
        self.driver.find_element(By.CSS_SELECTOR, f"label[for='{input_id}']").click()

    def select_example(self, name):
        """Loads an example (again, with the Reset button, if it is the one selected), discarding edits."""
        before = self.seq()
        select = Select(self.driver.find_element(By.ID, "example"))
        if select.first_selected_option.get_attribute("value") == name:
            self.driver.find_element(By.ID, "reset-example").click()
        else:
            select.select_by_value(name)
        self.wait(f"the decision of example {name}", lambda: self.seq() > before)

    def run_tests(self):
        before = self.js("return Number(document.getElementById('tests-results').dataset.run || 0)")
        self.driver.find_element(By.ID, "run-tests").click()
        self.wait(
            "the test results",
            lambda: self.js("return Number(document.getElementById('tests-results').dataset.run || 0)") > before,
        )
        return self.js(
            """
            return {rows: [...document.querySelectorAll('#tests-results tr.case')]
                        .map((tr) => [tr.dataset.name, tr.dataset.passed]),
                    summary: document.getElementById('tests-summary').textContent,
                    error: document.getElementById('tests-error').textContent.trim()};
            """
        )


def expected_decision(cli):
    return {"decision": cli["decision"], "status": str(cli["status"]), "rule": cli.get("rule")}


def compare_with_cli(run, label, requests):
    """Each request of the spec, decided in the page, against what `agent-iam check` answered."""
    for r in requests:
        req = r["request"]
        got = run.set_fields(
            {
                "req-method": req["method"],
                "req-path": req["path"],
                "req-host": req.get("host", ""),
                "req-headers": json.dumps(req.get("headers", {})),
                "req-time": req["time"],
            }
        )
        want = expected_decision(r["cli"])
        seen = {"decision": got["decision"], "status": got["status"], "rule": got["rule"]}
        run.check(f"{label}: {r['name']}: decision, status and rule as agent-iam check", seen == want,
                  {"page": seen, "cli": want, "errors": got["errors"]})
        if label.startswith("token"):
            # The gateway's own answer: the refusal's headers and body (but its request_id, which is the request's
            # x-request-id: Envoy's, the playground's, none in agent-iam check), and the identity headers forwarded.
            if r["cli"]["decision"] != "allow":
                try:
                    page_body, cli_body = json.loads(got["body"]), json.loads(r["cli"]["body"])
                    page_body.pop("request_id", None)
                    cli_body.pop("request_id", None)
                except ValueError:
                    page_body, cli_body = got["body"], r["cli"]["body"]
                run.check(f"{label}: {r['name']}: response body as agent-iam check (request_id aside)",
                          page_body == cli_body, {"page": got["body"], "cli": r["cli"]["body"]})
                cli_headers = [tuple(h) for h in r["cli"]["response_headers"] if h[0] != "content-length"]
                page_headers = [tuple(h) for h in got["response_headers"] if h[0] != "content-length"]
                run.check(f"{label}: {r['name']}: response headers as agent-iam check", page_headers == cli_headers,
                          {"page": page_headers, "cli": cli_headers})
            else:
                cli_headers = [tuple(h) for h in r["cli"]["forwarded_headers"]]
                missing = [h for h in got["forwarded"] if tuple(h) not in cli_headers]
                run.check(f"{label}: {r['name']}: forwarded identity headers as agent-iam check",
                          got["forwarded"] and not missing, {"page": got["forwarded"], "not_in_cli": missing})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    os.makedirs(args.screenshots, exist_ok=True)

    profile = tempfile.mkdtemp(prefix="agent-iam-playground-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1440,1100",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        print(json.dumps({"error": f"could not start {CHROMIUM} through {CHROMEDRIVER}: {e}"}))
        return 2

    run = Run(driver, args.url, args.screenshots)
    report = {}
    started = time.monotonic()
    try:
        steps(run, spec, report)
    except Exception as e:  # noqa: BLE001 - every failure becomes a failed check with its screenshot
        run.check("the script ran to the end", False, f"{type(e).__name__}: {e}")
        try:
            run.shot("failure.png")
        except WebDriverException:
            pass
    finally:
        run.logs()
        severe = [e for e in run.console if e.get("level") == "SEVERE"]
        run.check("no console errors (SEVERE) in any page load", not severe, severe)
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    report.update(
        {
            "checks": run.checks,
            "screenshots": run.screenshots,
            "console": run.console,
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    print(json.dumps(report))
    return 0


def steps(run, spec, report):
    # 1. A fresh load: the engine, the first example, its decision; how soon the first decision was shown.
    run.load()
    report["first_decision_ms"] = run.js("return window.__firstDecisionMs === undefined ? null : window.__firstDecisionMs")
    report["engine_loaded"] = run.js("return document.getElementById('engine-info').textContent")
    run.check("the first decision is shown and timed", report["first_decision_ms"] is not None, report)
    run.shot("01-loaded.png")
    run.check("the page loads with no console errors", not [e for e in run.logs() if e.get("level") == "SEVERE"],
              run.console)

    # 2. Every example preloaded, and its tests in the Tests tab as `agent-iam test` runs them.
    names = run.js("return [...document.querySelectorAll('#example option')].map((o) => o.value).filter(Boolean)")
    run.check("every example is preloaded", set(spec["examples"]) <= set(names), {"page": names, "cli": sorted(spec["examples"])})
    report["examples"] = {}
    for i, (name, cli_cases) in enumerate(sorted(spec["examples"].items())):
        run.driver.find_element(By.ID, "tab-decide").click()
        run.select_example(name)
        sample = run.decision()
        run.driver.find_element(By.ID, "tab-tests").click()
        result = run.run_tests()
        page = {n: p == "true" for n, p in result["rows"]}
        same = page == cli_cases
        report["examples"][name] = {
            "cases": len(page),
            "passed": sum(page.values()),
            "summary": result["summary"],
            "sample_decision": {k: sample[k] for k in ("decision", "status", "rule")},
        }
        diff = {n: {"page": page.get(n), "cli": cli_cases.get(n)} for n in set(page) | set(cli_cases) if page.get(n) != cli_cases.get(n)}
        run.check(f"example {name}: the Tests tab passes and fails the cases agent-iam test does", same and not result["error"],
                  {"differences": diff, "error": result["error"], "cases": len(page)})
        if i == 0 or name == "mcp":
            run.shot(f"02-tests-{name}.png")
    run.driver.find_element(By.ID, "tab-decide").click()

    # 3. Requests `agent-iam check` decided (a whole configuration, a token): the page in claims mode with the token's
    #    claims, then in token mode with the token itself.
    check = spec["check"]
    run.select_example(check["example"])
    run.set_fields({"config": check["config"], "claims": json.dumps(check["claims"], indent=2)})
    compare_with_cli(run, "claims mode", check["requests"])
    run.shot("03-claims-mode.png")
    before = run.seq()
    run.click_label("mode-token")
    run.wait("the token mode's decision", lambda: run.seq() > before)
    run.set_fields({"token": check["token"]})
    decoded = run.js("return document.getElementById('token-claims').textContent")
    run.check("a pasted token is decoded for reading", decoded and json.loads(decoded) == check["claims"], decoded)
    compare_with_cli(run, "token mode", check["requests"])
    run.shot("04-token-mode.png")
    before = run.seq()
    run.click_label("mode-claims")
    run.wait("the claims mode's decision", lambda: run.seq() > before)

    # 4. An invalid configuration: its error at its path.
    invalid = spec["invalid"]
    got = run.set_fields({"config": invalid["config"]})
    run.wait("the configuration's error", lambda: run.driver.find_element(By.ID, "config-error").is_displayed())
    text = run.driver.find_element(By.ID, "config-error").text
    run.check("an invalid configuration shows its error path in #config-error", invalid["path"] in text,
              {"shown": text, "path": invalid["path"]})
    run.check("an invalid configuration gives no decision", got["decision"] == "error", got)
    run.driver.find_element(By.CSS_SELECTOR, "#config-error .error-path").click()
    selected = run.js("const t = document.getElementById('config'); return t.value.slice(t.selectionStart, t.selectionEnd)")
    run.check("the error's path selects the value in the editor", selected == invalid["value"],
              {"selected": selected, "value": invalid["value"]})
    run.shot("05-invalid-configuration.png")

    # 5. A shared link restores the whole state in a new page load: the compressed form the page writes, and the
    #    plain form (base64url of the JSON).
    run.select_example(check["example"])
    run.click_label("format-yaml")
    state = run.set_fields(
        {"req-path": "/quotes/SHARED?from=link", "req-method": "GET", "req-time": check["requests"][0]["request"]["time"]}
    )
    snapshot = run.js(
        """
        const ids = ['config', 'claims', 'token', 'tests', 'req-method', 'req-path', 'req-host', 'req-time',
                     'req-headers', 'req-peer-uri-san', 'req-peer-sha256', 'req-envoy-route', 'req-envoy-route-tag',
                     'req-mcp', 'example'];
        const out = {};
        for (const id of ids) out[id] = document.getElementById(id).value;
        out.format = document.getElementById('format-yaml').checked ? 'yaml' : 'json';
        out.mode = document.getElementById('mode-token').checked ? 'token' : 'claims';
        return out;
        """
    )
    run.check("the YAML toggle converts the configuration", snapshot["format"] == "yaml" and not snapshot["config"].lstrip().startswith("{")
              and state["decision"] in ("allow", "deny"), {"config": snapshot["config"][:200], "decision": state})
    run.driver.find_element(By.ID, "share").click()
    run.wait("the link", lambda: run.js("return document.getElementById('share').dataset.url || ''").startswith(run.url))
    link = run.js("return document.getElementById('share').dataset.url")
    plain = run.url.split("#")[0] + "#s=" + base64.urlsafe_b64encode(
        json.dumps(
            {
                "v": 1, "example": snapshot["example"], "format": snapshot["format"], "config": snapshot["config"],
                "mode": snapshot["mode"], "claims": snapshot["claims"], "token": snapshot["token"], "tests": snapshot["tests"],
                "tab": "decide",
                "request": {
                    "method": snapshot["req-method"], "path": snapshot["req-path"], "host": snapshot["req-host"],
                    "time": snapshot["req-time"], "headers": snapshot["req-headers"], "peer_uri_san": snapshot["req-peer-uri-san"],
                    "peer_sha256": snapshot["req-peer-sha256"], "envoy_route": snapshot["req-envoy-route"],
                    "envoy_route_tag": snapshot["req-envoy-route-tag"], "mcp": snapshot["req-mcp"],
                },
            }
        ).encode()
    ).decode().rstrip("=")
    report["link_chars"] = {"compressed": len(link), "plain": len(plain)}
    for form, url in (("compressed", link), ("plain", plain)):
        run.driver.switch_to.new_window("tab")
        run.load(url)
        restored = run.js(
            """
            const out = {};
            for (const id of Object.keys(arguments[0])) {
                if (id === 'format') out[id] = document.getElementById('format-yaml').checked ? 'yaml' : 'json';
                else if (id === 'mode') out[id] = document.getElementById('mode-token').checked ? 'token' : 'claims';
                else out[id] = document.getElementById(id).value;
            }
            return out;
            """,
            snapshot,
        )
        again = run.decision()
        differs = {k: {"shared": snapshot[k], "restored": restored.get(k)} for k in snapshot if restored.get(k) != snapshot[k]}
        run.check(f"a shared link ({form}) restores the state in a new page load", not differs, differs)
        run.check(f"a shared link ({form}) gives the same decision", [again[k] for k in ("decision", "status", "rule")]
                  == [state[k] for k in ("decision", "status", "rule")], {"shared": state, "restored": again})
        if form == "compressed":
            run.shot("06-restored-from-link.png")
        run.driver.close()
        run.driver.switch_to.window(run.driver.window_handles[0])


if __name__ == "__main__":
    sys.exit(main())
