"""Opens an explorer page in headless Chromium, optionally acts on it, and prints JSON of what
the page shows once it has settled: the text of every element with a `data-testid`, the row
count of every table (by its `data-testid`), the lineage picture's node count, and every
resource the page loaded (so the caller can check nothing came from outside the server).

Usage: explorer.py URL [ACTION...]   (TRIBUTARY_CHROMIUM and TRIBUTARY_CHROMEDRIVER name the
binaries). An ACTION is `click:TESTID`, `fill:TESTID=TEXT` (types TEXT and sends a change
event), `select:TESTID=VALUE`, `hover-center` (the mouse on the lineage picture's centre
node, until the picture has lit what it reaches), or `wait:TESTID=TEXT` (until that element
shows TEXT; it fails when it shows `failed`, or when the page has not changed for 5 minutes:
a slow machine that keeps making progress passes); the page settles again after each. With
TRIBUTARY_SCREENSHOT set to a path, the settled page is saved there as PNG (1280 wide).
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

SETTLED = """
const view = document.querySelector('[data-testid=view]');
if (!view || view.getAttribute('aria-busy') !== 'false') return false;
const text = view.innerText;
return !text.includes('Loading…') && !text.includes('Checking…');
"""

SHOWN = """
const count = (css) => document.querySelectorAll(css).length;
const out = { texts: {}, rows: {}, nodes: count('#graph .node'),
  lit: { up: count('#graph .node.up'), down: count('#graph .node.down'), dim: count('#graph .node.dim') } };
for (const el of document.querySelectorAll('[data-testid]')) {
  const id = el.dataset.testid;
  if (el.tagName === 'TABLE') {
    out.rows[id] = [...el.querySelectorAll('tbody tr')].filter((r) => !r.querySelector('td.muted[colspan]')).length;
  } else if (!(id in out.texts)) {
    out.texts[id] = el.innerText;
  }
}
out.resources = performance.getEntriesByType('resource').map((e) => e.name);
return out;
"""


def wait_for_text(driver, testid: str, text: str, stall: float = 300.0) -> None:
    """Waits until the element `testid` shows `text`; fails when it shows `failed` or when the
    page stays the same for `stall` seconds."""
    shown = f"const e = document.querySelector('[data-testid={testid}]'); return e ? e.innerText : null;"
    seen, moved = None, time.monotonic()
    while True:
        now = driver.execute_script(shown)
        if now == text:
            return
        page = driver.execute_script("return document.querySelector('[data-testid=view]').innerText")
        if now == "failed":
            raise SystemExit(f"{testid} shows failed:\n{page}")
        if page != seen:
            seen, moved = page, time.monotonic()
        if time.monotonic() - moved > stall:
            raise SystemExit(f"{testid} is {now!r}, not {text!r}, and the page has not changed for {stall} s:\n{page}")
        time.sleep(0.5)


def main(url: str, actions: list[str]) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["TRIBUTARY_CHROMIUM"]
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"]:
        options.add_argument(arg)
    service = Service(executable_path=os.environ["TRIBUTARY_CHROMEDRIVER"])
    driver = webdriver.Chrome(options=options, service=service)
    try:
        wait = WebDriverWait(driver, 300)  # a failsafe: each wait ends at its DOM condition
        driver.get(url)
        wait.until(lambda d: d.execute_script(SETTLED))
        for action in actions:
            if action == "hover-center":
                center = driver.find_element(By.CSS_SELECTOR, "#graph .node.center")
                ActionChains(driver).move_to_element(center).perform()
                # Lit: the picture says whose reach it shows; or it says why it cannot.
                wait.until(
                    lambda d: d.execute_script(
                        "return document.querySelector('#graph svg').dataset.lit"
                        " || document.querySelector('[data-testid=lit]').textContent"
                    )
                )
                continue
            verb, _, rest = action.partition(":")
            testid, _, value = rest.partition("=")
            if verb == "wait":
                wait_for_text(driver, testid, value)
                wait.until(lambda d: d.execute_script(SETTLED))
                continue
            el = driver.find_element(By.CSS_SELECTOR, f"[data-testid='{testid}']")
            if verb == "click":
                el.click()
            elif verb == "fill":
                el.clear()
                el.send_keys(value)
                driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", el)
            elif verb == "select":
                Select(el).select_by_value(value)
            else:
                raise SystemExit(f"unknown action {action}")
            wait.until(lambda d: d.execute_script(SETTLED))
        shot = os.environ.get("TRIBUTARY_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)
        print(json.dumps(driver.execute_script(SHOWN)))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
