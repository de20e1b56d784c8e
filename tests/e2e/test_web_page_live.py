"""The web page's live mode in a real headless browser against a running ``cesar serve`` (real Whisper).

Chromium's fake capture device is the microphone, playing the first seconds of the story in a loop; a page
gets it only where the test grants the permission (no fake prompt), so a page without the grant is refused
the microphone for certain. A host name the browser maps to 127.0.0.1 makes a plain-http page that is not
on localhost: no secure context, no microphone. As in test_web_page.py, a request that leaves the server,
a script error or a console error fails the test. With ``CESAR_SCREENSHOT_README`` set, the screenshot of
words arriving replaces ``docs/web-page-live.png`` (``make screenshot``).
"""

from __future__ import annotations

import os
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import AUDIO_DIR, CesarProcess, running_serve
from test_docs_browser import chromium_or_skip
from test_web_page import ARTIFACTS, KEY, Browser, job_row, open_page, wait_status

from cesar_common.transcription import audio as audio_io

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "web-page-live.png"
#: of the story: its first chapter and a half ("Chapter one. The river ran quietly past the old mill ...")
MICROPHONE_SECONDS = 15
INSECURE_HOST = "cesar-live.test"


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fake microphone says: Chromium reads 16-bit PCM WAV."""
    path = tmp_path_factory.mktemp("microphone") / "story.wav"
    samples = audio_io.decode_samples(AUDIO_DIR / "speech_en_long.flac")[: MICROPHONE_SECONDS * 16000]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((samples.clip(-1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def browser(microphone: Path) -> Iterator[Browser]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = [
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
    ]
    with sync_playwright() as playwright:
        driver = Browser(playwright, executable, args)
        try:
            yield driver
        finally:
            driver.browser.close()


@pytest.fixture(autouse=True)
def no_problems(browser: Browser) -> Iterator[None]:
    yield
    problems, browser.problems[:] = list(browser.problems), []
    assert problems == []


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    """Without the final pass a session's transcript is the segments confirmed live, which the page showed
    (with it, the whole audio decoded again may differ by a word); the audio is kept, for the page to play
    a session it did not record."""
    tmp = tmp_path_factory.mktemp("live-page")
    with running_serve(
        f"sqlite:///{tmp / 'cesar.db'}",
        log_path=tmp / "serve.log",
        env={"CESAR_LIVE_FINAL_PASS": "false", "CESAR_KEEP_AUDIO": "true"},
    ) as process:
        yield process


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def test_words_appear_as_spoken_and_stop_makes_the_session_a_job_that_plays(
    browser: Browser, serve: CesarProcess
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, serve.url)
    page.context.grant_permissions(["microphone"], origin=serve.url)
    page.get_by_label("Language").select_option("en")
    start = page.get_by_role("button", name="Start live")
    start.click()
    confirmed = page.locator("#live-confirmed")
    expect(confirmed).to_contain_text(re.compile("mill", re.IGNORECASE), timeout=60_000)
    expect(page.locator("#live-level")).not_to_have_attribute("value", "0")  # the meter moves
    assert page.locator("#live-error").is_hidden()
    row = job_row(page, "Live session")
    expect(row.locator(".status")).to_have_text("processing")
    card = page.locator("section[aria-labelledby=submit-title]")
    card.screenshot(path=str(ARTIFACTS / "live.png"))
    if os.environ.get("CESAR_SCREENSHOT_README"):
        card.screenshot(path=str(README_SCREENSHOT))

    page.get_by_role("button", name="Stop").click()
    wait_status(row, "completed", timeout=60_000)
    expect(page.locator("#live-status")).to_have_text(re.compile("now a job"))
    shown = words(confirmed.inner_text())
    assert page.locator("#live-tentative").inner_text() == ""
    job_id = row.get_attribute("data-job")
    job = httpx.get(f"{serve.url}/jobs/{job_id}").json()
    assert job["source"] == "live" and job["options"]["language"] == "en"
    text = httpx.get(f"{serve.url}/jobs/{job_id}/transcript").text
    assert words(text) == shown and "mill" in shown

    # the session's job is open: its transcript, the downloads, and what was recorded, played from memory
    expect(page.locator("#job-title")).to_have_text("Live session")
    expect(page.locator("#segments")).to_contain_text(re.compile("mill", re.IGNORECASE))
    assert words(" ".join(page.locator("#segments .text").all_inner_texts())) == shown
    with page.expect_download() as download:
        page.get_by_role("button", name="Download srt").click()
    assert download.value.suggested_filename.endswith(".srt")
    recorded = played_seconds(page)
    assert recorded == pytest.approx(job["duration"], abs=0.01)  # all of what was sent, and only that
    assert str(page.locator("#player").get_attribute("src")).startswith("blob:")

    # after a reload the page holds no copy: it plays the audio the server kept (GET /jobs/{id}/audio)
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    job_row(page, "Live session").click()
    assert played_seconds(page) == pytest.approx(recorded, abs=0.01)
    page.locator("#segments button.ts").first.wait_for()  # its times seek in it
    page.context.close()


#: the player's duration once it has read the audio's header (the page's CSP forbids wait_for_function's eval)
DURATION = """player => Number.isFinite(player.duration) ? player.duration : new Promise((resolve) => {
    player.addEventListener("durationchange", () => {
        if (Number.isFinite(player.duration)) resolve(player.duration);
    });
})"""


def played_seconds(page: Any) -> float:
    """The duration of what the job's player holds."""
    return float(page.locator("#player").evaluate(DURATION))


def test_a_refused_microphone_is_explained_and_the_page_still_works(
    browser: Browser, serve: CesarProcess
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, serve.url)  # no permission granted: the browser refuses
    page.get_by_role("button", name="Start live").click()
    expect(page.locator("#live-error")).to_contain_text("The browser refused the microphone")
    expect(page.get_by_role("button", name="Start live")).to_be_enabled()
    assert page.locator("#live-level").is_hidden()
    page.locator("section[aria-labelledby=submit-title]").screenshot(path=str(ARTIFACTS / "live-refused.png"))
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "speech_en.wav"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    wait_status(job_row(page, "speech_en.wav"), "completed")
    page.context.close()


def test_a_page_that_is_not_secure_says_why_it_has_no_live_mode(
    browser: Browser, serve: CesarProcess
) -> None:
    from playwright.sync_api import expect

    base = f"http://{INSECURE_HOST}:{serve.port}"
    page = open_page(browser, base)
    assert page.evaluate("window.isSecureContext") is False
    expect(page.locator("#live-error")).to_contain_text("needs the microphone")
    expect(page.locator("#live-error")).to_contain_text("https")
    expect(page.get_by_role("button", name="Start live")).to_be_disabled()
    assert page.locator("#jobs li").count() > 0 or page.locator("#no-jobs").is_visible()
    page.context.close()


def test_with_an_api_key_the_session_cookie_opens_the_live_socket(browser: Browser, tmp_path: Path) -> None:
    """The page never puts the key in the socket's URL: the cookie it traded the key for opens /live (here
    to be told that no worker runs, which only a client past the key hears)."""
    from playwright.sync_api import expect

    with running_serve(
        f"sqlite:///{tmp_path / 'cesar.db'}",
        log_path=tmp_path / "serve.log",
        workers="0",
        env={"CESAR_API_KEY": KEY, "CESAR_LIVE_START_SECONDS": "0.5"},
    ) as keyed:
        page = browser.page(keyed.url)
        page.context.grant_permissions(["microphone"], origin=keyed.url)
        page.goto(keyed.url)
        page.get_by_label("Key").fill(KEY)
        page.get_by_role("button", name="Open").click()
        page.wait_for_selector("html[data-ready=true]")
        page.get_by_role("button", name="Start live").click()
        expect(page.locator("#live-error")).to_contain_text("no worker took the live session")
        expect(page.get_by_role("button", name="Start live")).to_be_enabled()
        page.context.close()
