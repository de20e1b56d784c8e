"""/docs renders in a real headless browser with the network cut off: Swagger UI comes from Cesar itself.

Debian's chromium, driven by Playwright (``executable_path``), against ``python -m cesar_api`` in a
subprocess. Every request that does not go to the API is aborted and recorded: there must be none.
Without chromium the test skips, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from dbtools import migrate

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CESAR_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def chromium_or_skip() -> str:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'cesar.db'}"
    migrate(database)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env.update(CESAR_DATABASE_URL=database, CESAR_PORT=str(port), CESAR_LOG_LEVEL="warning")
    process = subprocess.Popen([sys.executable, "-m", "cesar_api"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the API exited"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_docs_render_every_operation_offline(api_url: str) -> None:
    executable = chromium_or_skip()
    from playwright.sync_api import Route, sync_playwright

    api_host = urlsplit(api_url).netloc
    blocked: list[str] = []
    errors: list[str] = []

    def only_the_api(route: Route) -> None:
        if urlsplit(route.request.url).netloc == api_host:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(service_workers="block")
            context.route("**/*", only_the_api)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{api_url}/docs", wait_until="load")
            page.wait_for_selector(".opblock", timeout=20_000)
            assert page.locator(".info .title").inner_text().startswith("Cesar")
            rendered = {
                (
                    block.locator(".opblock-summary-method").inner_text().strip(),
                    block.locator(".opblock-summary-path").get_attribute("data-path"),
                )
                for block in page.locator(".opblock").all()
            }
            spec = httpx.get(f"{api_url}/docs/openapi.json").json()
            documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
            assert rendered == documented and len(rendered) >= 10
            tags = {tag for item in spec["paths"].values() for op in item.values() for tag in op["tags"]}
            assert page.locator(".opblock-tag").count() == len(tags) >= 3  # Transcription, Jobs, Service...

            # an operation opens with its documented responses
            page.locator("#operations-Jobs-getJob .opblock-summary").click()
            page.wait_for_selector("#operations-Jobs-getJob .responses-table")
            codes = page.locator("#operations-Jobs-getJob .response-col_status").all_inner_texts()
            assert {"200", "404"} <= {code.strip() for code in codes}
        finally:
            browser.close()
    assert blocked == []
    assert errors == []
