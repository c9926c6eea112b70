"""The dashboard in a real headless Chromium (Python playwright) against a real
``hotpath serve`` tree on the session Redis and simulator (20 symbols): rows appear and
update, sorting and filtering work, the detail view shows a book and trades, and the page
reconnects by itself when the node is replaced by a new one on the same port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.helpers import Node, Sim, free_port, http_get

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-output" / "dashboard.png"
SYMBOLS = 20  # the session simulator's universe (conftest: --symbols 20)
# Headless on a machine without internet: no sandbox (containers), no GPU, and none of
# the background traffic Chromium would otherwise keep retrying.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
WAIT = 15_000  # ms, for anything the page should do by itself


def _find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; installed like scripts/test does when missing, else a skip."""
    path = _find_chromium()
    if path is None:
        subprocess.run(["bash", "-c", 'source scripts/bootstrap.sh && ensure_chromium'],
                       cwd=ROOT, stdin=subprocess.DEVNULL, timeout=900, check=False)
        path = _find_chromium()
    if path is None:
        pytest.skip("chromium is not installed and could not be installed "
                    "(Debian/Ubuntu: apt-get install chromium)")
    return path


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh profile directory per test."""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1440, "height": 900})
        try:
            yield context
        finally:
            context.close()


def _until(page: Page, condition: str, n: Any) -> None:
    """Wait until ``condition`` (a JS expression of ``n``) holds. A function, not a bare
    expression: the page's CSP forbids the eval Playwright would use for the latter."""
    page.wait_for_function(f"n => {condition}", arg=n, timeout=WAIT)


def _column(page: Page, key: str) -> list[str]:
    cells: list[str] = page.eval_on_selector_all(
        f'#markets tbody tr:not([hidden]) td[data-key="{key}"]',
        "cells => cells.map(c => c.textContent)")
    return cells


def _wait_sorted(page: Page, key: str, descending: bool) -> None:
    """Some frame shows the column in order (values move on, so poll every frame)."""
    page.wait_for_function(
        """([key, descending]) => {
            const cells = document.querySelectorAll(`#markets tbody td[data-key="${key}"]`);
            const values = [...cells].map(c => key === "symbol"
                ? c.textContent : parseFloat(c.textContent.replace(/[+%,]/g, "")));
            return values.every((v, i) => i === 0 ||
                (descending ? values[i - 1] >= v : values[i - 1] <= v));
        }""", arg=[key, descending], polling="raf", timeout=WAIT)


def _wait_prices_change(page: Page) -> None:
    before = _column(page, "price")
    page.wait_for_function(
        """before => [...document.querySelectorAll('#markets tbody td[data-key="price"]')]
            .some((c, i) => c.textContent !== before[i])""", arg=before, timeout=WAIT)


def _check_table(page: Page, node: Node) -> None:
    _until(page, "document.querySelectorAll('#markets tbody tr:not(.loading)').length === n",
           SYMBOLS)
    status, body = http_get(node.url + "/symbols")
    assert status == 200, body
    assert sorted(_column(page, "symbol")) == sorted(body["symbols"])
    _wait_prices_change(page)


def _check_sorting_and_filter(page: Page) -> None:
    header = page.locator('#markets th[data-key="change24hPercent"] button')
    header.click()
    sort = page.get_attribute('#markets th[data-key="change24hPercent"]', "aria-sort")
    assert sort == "descending"
    _wait_sorted(page, "change24hPercent", descending=True)
    header.click()
    _wait_sorted(page, "change24hPercent", descending=False)
    page.click('#markets th[data-key="symbol"] button')
    _wait_sorted(page, "symbol", descending=False)
    assert _column(page, "symbol")[0] < _column(page, "symbol")[-1]

    page.fill("#filter", "btc")
    _until(page, "document.querySelectorAll('#markets tbody tr:not([hidden])').length === n", 1)
    assert _column(page, "symbol") == ["BTCUSDT"]
    page.fill("#filter", "")
    _until(page, "document.querySelectorAll('#markets tbody tr:not([hidden])').length === n",
           SYMBOLS)


def _check_detail(page: Page) -> None:
    page.click('#markets tr[data-symbol="ETHUSDT"]')
    page.wait_for_selector('#detail[data-symbol="ETHUSDT"]', timeout=WAIT)
    assert page.text_content("#d-symbol") == "ETHUSDT"
    assert page.url.endswith("#ETHUSDT")
    _until(page, "document.querySelectorAll('#book-bids .level').length >= n && "
                 "document.querySelectorAll('#book-asks .level').length >= n && "
                 "document.querySelectorAll('#trades tbody tr').length >= 1", 10)
    best_bid, best_ask = page.evaluate("""() => [
        document.querySelector("#book-bids .level span:last-child").textContent,
        document.querySelector("#book-asks .level span:first-child").textContent]""")
    assert float(best_bid) < float(best_ask)
    candles = page.evaluate("window.hotpath.client.get('kline:1m:ETHUSDT').candles.length")
    assert candles >= 1


def _check_status_bar(page: Page) -> None:
    page.wait_for_selector('#st-conn[data-state="connected"]', timeout=WAIT)
    _until(page, "parseInt(document.getElementById('st-rate').textContent) > n", 0)
    _until(page, "document.getElementById('st-node').textContent.includes(n)", "client")


def _check_plain_script(page: Page) -> None:
    """/client.js also works as a classic script: it defines window.HotpathClient."""
    page.add_script_tag(url="/client.js")
    assert page.evaluate("typeof window.HotpathClient === 'function' && "
                         "window.Hotpath.HotpathClient === window.HotpathClient")


def test_dashboard(browser: BrowserContext, redis_url: str, sim: Sim, namespace: str,
                   tmp_path: Path) -> None:
    port = free_port()
    errors: list[Any] = []
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.on("pageerror", lambda error: errors.append(error))

    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, port=port,
                    log_path=tmp_path / "serve-1.log") as node:
        status, _ = http_get(node.url + "/dashboard")
        assert status == 200, "GET /dashboard: is static_response wired into Worker.route?"
        page.goto(node.url + "/dashboard")
        _check_table(page, node)
        _check_status_bar(page)
        _check_sorting_and_filter(page)
        _check_detail(page)
        _check_plain_script(page)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

        node.stop()
        page.wait_for_selector('#st-conn:not([data-state="connected"])', timeout=WAIT)

    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, port=port,
                    log_path=tmp_path / "serve-2.log") as node:
        page.wait_for_selector('#st-conn[data-state="connected"]', timeout=30_000)
        _until(page, "document.querySelectorAll('#markets tbody tr.stale').length === n", 0)
        _wait_prices_change(page)
        _until(page, "window.hotpath.client.meta(n).stale === false", "orderbook:50:ETHUSDT")

    assert errors == [], errors
