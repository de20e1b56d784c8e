"""The web page at ``/``, in a real headless browser against a running ``cesar serve``.

Debian's chromium driven by Playwright, as for ``/docs``. Every request that leaves the server is aborted
and recorded (there must be none), and any script error, console error or dialog fails the test.
Screenshots go to ``test-artifacts/web/`` (``CESAR_TEST_ARTIFACTS`` moves it); with
``CESAR_SCREENSHOT_README`` set, the finished-transcript screenshot also replaces the README's
(``make screenshot``).
"""

from __future__ import annotations

import json
import os
import re
import time
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import srt
from serve_helpers import AUDIO_DIR, CesarProcess, Client, running_serve, wait_for
from test_docs_browser import chromium_or_skip

from cesar_common.db.records import Decoding, JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.transcription import audio as audio_io

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CESAR_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "web"
README_SCREENSHOT = ROOT / "docs" / "web-page.png"
KEY = "page-test-key-5d1c"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.mp3"
HOSTILE_TEXT = "<img src=x onerror=alert(2)><b>not bold</b> & <script>alert(3)</script>"
PAGE_WEIGHT_LIMIT = 150 * 1024


class Browser:
    """One chromium for the module; each page records what would mean a broken or unsafe page."""

    def __init__(self, playwright: Any, executable: str, args: Sequence[str] = ()) -> None:
        self.browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu", *args]
        )
        self.problems: list[str] = []
        self.urls: list[str] = []

    def page(self, base: str, *, width: int = 1280, height: int = 900, **context: Any) -> Any:
        host = urlsplit(base).netloc
        ctx = self.browser.new_context(
            viewport={"width": width, "height": height},
            service_workers="block",
            accept_downloads=True,
            **context,
        )

        def only_cesar(route: Any) -> None:
            self.urls.append(route.request.url)
            if urlsplit(route.request.url).netloc == host:
                route.continue_()
            else:
                self.problems.append(f"third-party request: {route.request.url}")
                route.abort("internetdisconnected")

        ctx.route("**/*", only_cesar)
        page = ctx.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on(
            "dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
        )
        page.on("console", lambda message: self._console(message))
        return page

    def _console(self, message: Any) -> None:
        # a refused request logs "Failed to load resource": the tests check those answers themselves
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        driver = Browser(playwright, executable)
        try:
            yield driver
        finally:
            driver.browser.close()


@pytest.fixture(autouse=True)
def no_problems(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "browser" in request.fixturenames:
        driver: Browser = request.getfixturevalue("browser")
        problems, driver.problems[:] = list(driver.problems), []
        assert problems == []


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    tmp = tmp_path_factory.mktemp("page")
    with running_serve(f"sqlite:///{tmp / 'cesar.db'}", log_path=tmp / "serve.log", workers="1") as process:
        yield process


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CesarProcess, str]]:
    """A server with an API key and no worker: its jobs stay where the test puts them."""
    tmp = tmp_path_factory.mktemp("keyed")
    database = f"sqlite:///{tmp / 'cesar.db'}"
    with running_serve(
        database, log_path=tmp / "serve.log", workers="0", env={"CESAR_API_KEY": KEY}
    ) as process:
        yield process, database


def screenshot(page: Any, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(browser: Browser, base: str, **kwargs: Any) -> Any:
    page = browser.page(base, **kwargs)
    page.goto(base, wait_until="load")
    page.wait_for_selector("html[data-ready=true]", timeout=20_000)
    return page


def job_row(page: Any, name: str) -> Any:
    return page.locator("#jobs li", has=page.locator(".name", has_text=name)).first


def request_held(page: Any, held: list[Any], what: str) -> None:
    """Wait until a route ``held`` requests (appending them) holds one: Playwright runs route handlers
    while the page is asked something."""
    deadline = time.monotonic() + 20
    while not held:
        assert time.monotonic() < deadline, f"no request for {what}"
        page.wait_for_timeout(20)


def wait_status(row: Any, status: str, timeout: float = 120_000) -> None:
    row.locator(f".status.{status}").wait_for(timeout=timeout)


def jobs_named(base: str, name: str, **headers: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"{base}/jobs", params={"limit": 200}, headers=headers).json()
    return [job for job in listed if job["audio_path"] == name]


# --- the page itself ------------------------------------------------------------------------------------
def test_the_page_is_small_safe_and_quick(browser: Browser, serve: CesarProcess) -> None:
    root = httpx.get(serve.url)
    assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
    policy = root.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assets = re.findall(r'(?:href|src)="(/ui/[^"]+)"', root.text)
    assert {"/ui/cesar.css", "/ui/cesar.js"} <= set(assets)
    script = httpx.get(f"{serve.url}/ui/cesar.js").text
    assets += re.findall(r'"(/ui/[^"]+\.js)"', script)  # the live mode's AudioWorklet
    assert "/ui/live-worklet.js" in assets
    weight = len(root.content) + sum(len(httpx.get(f"{serve.url}{path}").content) for path in assets)
    assert weight < PAGE_WEIGHT_LIMIT, f"{weight} bytes"
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", script)

    page = open_page(browser, serve.url)
    ready_ms = page.evaluate("window.cesarReadyMs")  # navigation start to a usable page
    (ARTIFACTS / "page.json").write_text(json.dumps({"weight_bytes": weight, "ready_ms": ready_ms}))
    print(f"page weight {weight} bytes; interactive {ready_ms:.0f} ms after navigation")
    assert page.get_by_label("Model").input_value() == "tiny.en"
    assert page.get_by_label("Language").locator("option").count() > 90
    page.context.close()


def test_an_upload_shows_its_words_then_downloads_and_plays(browser: Browser, serve: CesarProcess) -> None:
    page = open_page(browser, serve.url)
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "speech_en.mp3"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    row = job_row(page, "speech_en.mp3")
    row.click()
    page.locator("#segments li").first.wait_for(timeout=120_000)  # the words as they are decoded
    wait_status(row, "completed")
    transcript = page.locator("#segments").inner_text().lower()
    assert "lazy" in transcript and "reliable" in transcript
    assert page.locator("#uploads li progress").first.get_attribute("value") == "1"

    with page.expect_download() as download:
        page.get_by_role("button", name="Download srt").click()
    assert download.value.suggested_filename == "speech_en.srt"
    assert page.get_by_role("button", name="Download rttm").count() == 0  # no speaker turns without diarize
    subtitles = list(srt.parse(Path(download.value.path()).read_text()))
    assert subtitles and "lazy" in " ".join(item.content for item in subtitles).lower()

    # the page still holds the file: it plays it, and a segment's time seeks there
    player = page.locator("#player")
    assert player.is_visible()
    stamps = page.locator("#segments button.ts")
    last = stamps.last
    start = float(page.locator("#segments li").last.get_attribute("data-start"))
    last.click()
    wait_for(lambda: abs(player.evaluate("p => p.currentTime") - start) < 0.5, timeout=10, what="the seek")
    screenshot(page, "finished-transcript.png")
    if os.environ.get("CESAR_SCREENSHOT_README"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOT), full_page=True)
    page.context.close()


def test_two_files_at_once(browser: Browser, serve: CesarProcess) -> None:
    page = open_page(browser, serve.url)
    page.get_by_label("or choose them").set_input_files(
        [str(AUDIO_DIR / "speech_en.wav"), str(AUDIO_DIR / "speech_en.flac")]
    )
    page.get_by_role("button", name="Transcribe", exact=True).click()
    assert page.locator("#uploads li").count() >= 2
    for name in ("speech_en.wav", "speech_en.flac"):
        wait_status(job_row(page, name), "completed")
    page.context.close()


def test_speakers_when_asked_for(browser: Browser, serve: CesarProcess) -> None:
    page = open_page(browser, serve.url)
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "two_speakers.wav"))
    page.get_by_label("Who spoke when").check()
    page.get_by_role("button", name="Transcribe", exact=True).click()
    row = job_row(page, "two_speakers.wav")
    row.click()
    wait_status(row, "completed")
    page.locator("#segments .speaker", has_text="SPEAKER_01").first.wait_for()
    speakers = set(page.locator("#segments .speaker").all_inner_texts())
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}
    with page.expect_download() as download:
        page.get_by_role("button", name="Download rttm").click()
    turns = Path(download.value.path()).read_text().splitlines()
    assert turns and {line.split()[7] for line in turns} == {"SPEAKER_00", "SPEAKER_01"}
    page.context.close()


def test_a_running_long_job_is_cancelled(browser: Browser, serve: CesarProcess, tmp_path: Path) -> None:
    long = tmp_path / "long_story.wav"  # four times the 70 s story: it runs long enough to cancel
    samples = audio_io.decode_samples(AUDIO_DIR / "speech_en_long.flac")
    pcm = (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(long), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000), out.writeframes(pcm * 4)
    page = open_page(browser, serve.url)
    page.get_by_label("or choose them").set_input_files(str(long))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    row = job_row(page, "long_story.wav")
    row.click()
    page.locator("#job-meta", has_text="Status: processing").wait_for(timeout=120_000)
    page.get_by_role("button", name="Cancel").click()
    wait_status(row, "cancelled", timeout=60_000)
    assert page.get_by_role("button", name="Delete").is_enabled()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Confirm delete").click()
    row.wait_for(state="detached")
    assert jobs_named(serve.url, "long_story.wav") == []
    page.context.close()


def test_a_file_that_is_not_audio_says_so_once_and_makes_no_job(
    browser: Browser, serve: CesarProcess
) -> None:
    page = open_page(browser, serve.url)
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "junk.mp3"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    row = page.locator("#uploads li", has=page.locator(".name", has_text="junk.mp3"))
    row.locator(".status.error").wait_for()
    assert row.locator(".status").text_content() == "failed"
    # why, once, beside the file's name (not again as an alert, nor with the name put before it)
    reason = row.locator("p.error").inner_text()
    assert reason.startswith("Not an audio file: junk.mp3 is not an audio or video file"), reason
    assert page.get_by_text("Not an audio file").count() == 1
    assert page.locator("#alerts p").count() == 0
    # the bar does not stay full in the page's colour, as if the file had gone through
    assert row.locator("progress").count() == 0
    screenshot(page, "refused-upload.png")
    assert jobs_named(serve.url, "junk.mp3") == []
    page.context.close()


def test_the_jobs_list_says_it_is_loading(browser: Browser, serve: CesarProcess) -> None:
    """Before the script has run (the page as served), and until the first page of jobs is in."""
    page = browser.page(serve.url)
    held: list[Any] = []
    waiting = re.compile(r"/ui/cesar\.js$|/jobs\?")
    page.route(waiting, lambda route: held.append(route))
    page.goto(serve.url, wait_until="commit")
    loading = page.locator("#jobs-loading")
    loading.wait_for()
    assert loading.inner_text() == "Loading jobs…" and page.locator("#no-jobs").is_hidden()
    request_held(page, held, "the script")
    screenshot(page, "loading.png")
    held.pop().continue_()
    request_held(page, held, "the first page of jobs")  # the script runs, the list is not in yet
    assert loading.is_visible() and page.locator("#app").is_visible()
    held.pop().continue_()
    page.unroute(waiting)  # the list's refreshes
    page.wait_for_selector("html[data-ready=true]")
    assert loading.is_hidden()
    assert page.locator("#jobs li").count() > 0 or page.locator("#no-jobs").is_visible()
    page.context.close()


def test_dismiss_stays_one_word_beside_a_long_alert(browser: Browser, serve: CesarProcess) -> None:
    page = open_page(browser, serve.url, width=375, height=740)
    page.get_by_role("button", name="Transcribe", exact=True).click()  # nothing chosen: an alert
    dismiss = page.locator("#alerts p button", has_text="Dismiss")
    dismiss.wait_for()
    lines = "b => { const r = new Range(); r.selectNodeContents(b); return r.getClientRects().length; }"
    assert dismiss.evaluate(lines) == 1
    screenshot(page, "alert-phone.png")
    dismiss.click()
    assert page.locator("#alerts p").count() == 0
    page.context.close()


def test_the_page_works_at_phone_width_in_the_dark(
    browser: Browser, serve: CesarProcess, tmp_path: Path
) -> None:
    long_name = tmp_path / ("council-meeting-" * 6 + "recording.wav")  # one long word must wrap, not scroll
    long_name.write_bytes((AUDIO_DIR / "speech_en.wav").read_bytes())
    client = Client(serve.url)
    client.wait_status(client.upload(long_name), {"completed"}, timeout=120)
    client.close()
    page = open_page(browser, serve.url, width=375, height=740, color_scheme="dark")
    job_row(page, long_name.name).click()
    page.locator("#segments li").first.wait_for()
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"scrolls sideways: {width}"
    screenshot(page, "phone-dark.png")
    page.keyboard.press("Escape")  # the keyboard closes the job
    assert page.locator("#job").is_hidden()
    page.context.close()


# --- a server with an API key ---------------------------------------------------------------------------
def test_with_a_key_the_page_asks_once_and_never_puts_it_in_a_url(
    browser: Browser, keyed: tuple[CesarProcess, str]
) -> None:
    serve, _database = keyed
    page = browser.page(serve.url)
    first_url = len(browser.urls)
    page.goto(serve.url, wait_until="load")
    dialog = page.locator("#key-dialog")
    dialog.wait_for()
    page.get_by_label("Key").fill("not-the-key")
    page.get_by_role("button", name="Open").click()
    page.locator("#key-error", has_text="not this server's").wait_for()
    page.get_by_label("Key").fill(KEY)
    page.get_by_role("button", name="Open").click()
    page.wait_for_selector("html[data-ready=true]")
    page.locator("#who", has_text="All jobs (admin)").wait_for()  # the server's own key
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "speech_en.ogg"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    job_row(page, "speech_en.ogg").wait_for()
    page.reload()  # the key is kept for the tab: no second question
    page.wait_for_selector("html[data-ready=true]")
    assert dialog.is_hidden()
    job_row(page, "speech_en.ogg").wait_for()
    assert all(KEY not in url for url in browser.urls[first_url:])
    assert len(jobs_named(serve.url, "speech_en.ogg", Authorization=f"Bearer {KEY}")) == 1
    page.context.close()


def test_a_users_key_sees_its_name_its_jobs_and_its_limit(
    browser: Browser, keyed: tuple[CesarProcess, str]
) -> None:
    """The header names the key and what is left of its limits; past max_queued (no worker here: the first
    job stays queued), the refusal names the limit beside the file."""
    serve, database = keyed
    store = JobStore.from_url(database)
    _record, alice = store.create_key("alice", max_queued=1, audio_hours_per_day=2)
    store.close()
    page = browser.page(serve.url)
    page.goto(serve.url)
    page.get_by_label("Key").fill(alice)
    page.get_by_role("button", name="Open").click()
    page.wait_for_selector("html[data-ready=true]")
    who = page.locator("#who")
    who.filter(has_text="Jobs of alice · 0 of 1 queued · 2 h of audio left today").wait_for()
    assert page.locator("#jobs li").count() == 0  # the other tests' jobs are not alice's
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "speech_en.wav"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    job_row(page, "speech_en.wav").wait_for()
    who.filter(has_text="Jobs of alice · 1 of 1 queued").wait_for()
    page.get_by_label("or choose them").set_input_files(str(AUDIO_DIR / "speech_en.flac"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    refused = page.locator("#uploads li", has=page.locator(".name", has_text="speech_en.flac"))
    reason = refused.locator("p.error").inner_text()
    assert reason.startswith("Limit reached: ") and "max_queued" in reason, reason
    assert page.locator("#jobs li").count() == 1
    screenshot(page, "key-limit.png")
    page.context.close()


def test_names_and_transcripts_are_shown_as_text(
    browser: Browser, keyed: tuple[CesarProcess, str], tmp_path: Path
) -> None:
    serve, database = keyed
    store = JobStore.from_url(database)
    job = store.create_job(
        NewJob(JobSource.URL, TranscribeOptions(model="tiny.en"), source_url="https://example.com/a.mp3"),
        None,
    )
    others = []  # no worker on this server: the test claims jobs, oldest first, until it has its own
    while (claimed := store.claim_work("page-test", lease_seconds=60)) is not None and claimed.id != job.id:
        others.append(claimed.id)
    segment = {"id": 0, "start": 0.0, "end": 2.0, "text": HOSTILE_TEXT}
    result = JobResult(
        text=HOSTILE_TEXT, language="en", language_probability=1.0, duration=2.0, segments=[segment],
        decoding=Decoding(device="cpu", compute_type="int8", mode="sequential", batch_size=1),
    )  # fmt: skip
    assert store.complete_job(job.id, "page-test", result)
    for other in others:
        store.release_job(other, "page-test")
    store.close()
    hostile = tmp_path / HOSTILE_NAME
    hostile.write_bytes((AUDIO_DIR / "speech_en.mp3").read_bytes())

    page = browser.page(serve.url)
    page.goto(serve.url)
    page.get_by_label("Key").fill(KEY)
    page.get_by_role("button", name="Open").click()
    page.wait_for_selector("html[data-ready=true]")
    page.get_by_label("or choose them").set_input_files(str(hostile))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    job_row(page, HOSTILE_NAME).wait_for()
    job_row(page, "https://example.com/a.mp3").click()
    page.locator("#segments li", has_text="not bold").wait_for()
    assert page.locator("#segments .text").first.inner_text() == HOSTILE_TEXT.strip()
    injected = page.locator("main img, main b, main script:not([src])").count()
    assert injected == 0
    screenshot(page, "hostile-text.png")
    page.context.close()


SCRIPTS = [
    "Сегодня мы будем говорить о погоде.",  # Cyrillic  # noqa: RUF001 - the letters are the point
    "Καλημέρα σας, ο καιρός είναι ωραίος.",  # Greek  # noqa: RUF001
    "صباح الخير، الطقس جميل اليوم.",  # Arabic, right to left
    "今天天气很好，我们去公园散步。",  # Chinese  # noqa: RUF001
    "今日はいい天気ですね。",  # Japanese
]


def test_other_scripts_are_shown_intact(browser: Browser, keyed: tuple[CesarProcess, str]) -> None:
    """A transcript in Cyrillic, Greek, Arabic, Chinese and Japanese (what the multilingual model writes) is
    shown as it was stored, each segment whole, and its downloads keep it."""
    serve, database = keyed
    store = JobStore.from_url(database)
    job = store.create_job(
        NewJob(JobSource.URL, TranscribeOptions(model="tiny.en"), source_url="https://example.com/мир.mp3"),
        None,
    )
    others = []
    while (claimed := store.claim_work("page-test", lease_seconds=60)) is not None and claimed.id != job.id:
        others.append(claimed.id)
    segments = [
        {"id": index, "start": 2.0 * index, "end": 2.0 * index + 1.5, "text": f" {text}"}
        for index, text in enumerate(SCRIPTS)
    ]
    result = JobResult(
        text=" ".join(SCRIPTS), language="ru", language_probability=0.9, duration=10.0, segments=segments,
        decoding=Decoding(device="cpu", compute_type="int8", mode="sequential", batch_size=1),
    )  # fmt: skip
    assert store.complete_job(job.id, "page-test", result)
    for other in others:
        store.release_job(other, "page-test")
    store.close()

    page = browser.page(serve.url)
    page.goto(serve.url)
    page.get_by_label("Key").fill(KEY)
    page.get_by_role("button", name="Open").click()
    page.wait_for_selector("html[data-ready=true]")
    job_row(page, "https://example.com/мир.mp3").click()
    page.locator("#segments li", has_text=SCRIPTS[-1]).wait_for()
    shown = [text.strip() for text in page.locator("#segments .text").all_inner_texts()]
    assert shown == SCRIPTS
    with page.expect_download() as download:
        page.get_by_role("button", name="Download srt").click()
    srt = Path(download.value.path()).read_text(encoding="utf-8")
    for text in SCRIPTS:
        assert text in srt
    screenshot(page, "other-scripts.png")
    page.context.close()
