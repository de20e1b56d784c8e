"""Correcting a diarized transcript on the web page, in a real headless browser.

The API runs in this process (uvicorn in a thread) on a migrated SQLite database; the test writes a
finished diarized job straight into the store, as a worker would (no model runs), with one speaker named by
the voice library and one not. As in test_web_page.py, a request that leaves the server, a script error, a
console error or a dialog fails the test, and hostile names and text must stay text.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from dbtools import migrate
from test_docs_browser import chromium_or_skip
from test_web_page import ARTIFACTS, Browser, job_row, open_page, screenshot

from cesar_api.app import create_app
from cesar_common.db.records import Decoding, JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings

pytestmark = pytest.mark.browser

HOSTILE_NAME = '<img src=x onerror="window.pwned=1">'
HOSTILE_TEXT = '"><script>window.pwned=2</script><b>not bold</b>'
SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 3.0, "speaker": "Diane", "text": " Good morning, everyone."},
    {"id": 1, "start": 3.5, "end": 6.0, "speaker": "SPEAKER_01", "text": " Morning, Diane."},
    {"id": 2, "start": 6.5, "end": 9.0, "speaker": "Diane", "text": " Let us start with the budget."},
    {"id": 3, "start": 9.5, "end": 12.0, "speaker": "SPEAKER_01", "text": " The numbers are in."},
]
#: where a voice print points (unit vectors, as the diarizer's are)
VOICES = {"SPEAKER_00": [1.0] + [0.0] * 255, "SPEAKER_01": [0.0, 1.0] + [0.0] * 254}


@dataclass
class Server:
    url: str
    store: JobStore


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API alone (no worker: the job is finished by the test), served from this process."""
    database = f"sqlite:///{tmp_path_factory.mktemp('speakers-page') / 'cesar.db'}"
    migrate(database)
    store = JobStore.from_url(database)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(Settings(database_url=database), store), log_level="warning", ws="none", lifespan="on"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", store)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


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
def no_problems(browser: Browser) -> Iterator[None]:
    yield
    problems, browser.problems[:] = list(browser.problems), []
    assert problems == []


def diarized_job(store: JobStore, name: str) -> str:
    """A finished diarized job, as a worker leaves one: its first voice named Diane by the library."""
    diane = next((person for person in store.list_speakers() if person.name == "Diane"), None)
    diane = diane or store.create_speaker("Diane")
    job = store.create_job(
        NewJob(
            JobSource.URL,
            TranscribeOptions(model="tiny.en", diarize=True),
            source_url=f"https://example.com/{name}",
        ),
        None,
    )
    claimed = store.claim_work("page-test", lease_seconds=60)
    assert claimed is not None and claimed.id == job.id
    named = {"speaker_id": diane.id, "distance": 0.041}
    unknown = {"speaker_id": None, "distance": None}
    speakers = [
        {"speaker": "Diane", "label": "SPEAKER_00", "duration": 5.5, **named},
        {"speaker": "SPEAKER_01", "label": "SPEAKER_01", "duration": 5.0, **unknown},
    ]
    text = " ".join(segment["text"].strip() for segment in SEGMENTS)
    result = JobResult(
        text=text, language="en", language_probability=1.0, duration=12.0, segments=SEGMENTS,
        speakers=speakers, voices=VOICES,
        decoding=Decoding(device="cpu", compute_type="int8", mode="sequential", batch_size=1),
    )  # fmt: skip
    assert store.complete_job(job.id, "page-test", result)
    return job.id


def open_job(browser: Browser, server: Server, name: str) -> Any:
    page = open_page(browser, server.url)
    job_row(page, name).click()
    page.locator("#segments li").first.wait_for()
    return page


def line(page: Any, segment: int) -> Any:
    return page.locator(f'#segments li[data-segment="{segment}"]')


def settled(page: Any) -> Any:
    """Once the page has the server's answer to its correction and shows the transcript again."""
    page.locator("#segments:not([aria-busy=true]) li").first.wait_for()
    return page.locator("#segments")


def assert_inert(page: Any) -> None:
    """Hostile text stayed text: nothing it holds became an element, nothing it holds ran."""
    assert page.locator("main img, main b, main script:not([src]), dialog img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_rename_edit_undo_and_reload(browser: Browser, server: Server) -> None:
    from playwright.sync_api import expect

    job_id = diarized_job(server.store, "meeting.mp3")
    page = open_job(browser, server, "meeting.mp3")
    speakers, texts = page.locator("#segments .speaker"), page.locator("#segments .text")

    # who spoke, how long, and which name came from the library
    people = page.locator("#speakers li")
    expect(people).to_have_text(["Diane 0:05 talking known voice", "SPEAKER_01 0:05 talking"])
    assert "0.041" in people.first.locator(".badge").get_attribute("title")
    expect(speakers).to_have_text(["Diane", "SPEAKER_01", "Diane", "SPEAKER_01"])

    # rename SPEAKER_01 from a line of theirs, with the keyboard, remembering the voice
    line(page, 1).locator(".speaker").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#speaker-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Rename SPEAKER_01")
    expect(page.locator('#known-speakers option[value="Diane"]')).to_have_count(1)
    page.get_by_label("Name: type one").fill(HOSTILE_NAME)
    page.get_by_label("Remember this voice").check()
    screenshot(page, "rename-speaker.png")
    page.keyboard.press("Enter")
    settled(page)
    expect(speakers).to_have_text(["Diane", HOSTILE_NAME, "Diane", HOSTILE_NAME])
    expect(page.locator("#segments li:focus-within")).to_have_attribute("data-segment", "1")  # focus kept
    expect(people.filter(has_text="Diane").locator(".badge")).to_have_count(1)  # still the library's
    job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert {speaker["speaker"] for speaker in job["speakers"]} == {"Diane", HOSTILE_NAME}
    library = httpx.get(f"{server.url}/speakers").json()["speakers"]
    assert HOSTILE_NAME in [person["name"] for person in library]  # the voice is remembered

    # correct a line: click, type, Enter; Escape cancels another and leaves the job open
    line(page, 2).locator(".text").click()
    editor = page.locator("textarea.editor")
    expect(editor).to_have_value("Let us start with the budget.")
    editor.fill(f"Let us start with the {HOSTILE_TEXT}")
    page.keyboard.press("Enter")
    expect(settled(page).locator(".text").nth(2)).to_have_text(f"Let us start with the {HOSTILE_TEXT}")
    line(page, 0).locator(".text").focus()
    page.keyboard.press("Enter")
    page.keyboard.type(" never saved")
    page.keyboard.press("Shift+Enter")  # no line breaks in a segment: nothing happens
    expect(editor).to_have_value("Good morning, everyone. never saved")
    page.keyboard.press("Escape")
    expect(editor).to_have_count(0)
    expect(texts.first).to_have_text("Good morning, everyone.")
    line(page, 0).locator(".speaker").click()
    page.keyboard.press("Escape")  # the dialog closes, the job stays
    expect(dialog).to_be_hidden()
    assert page.locator("#job").is_visible()
    assert_inert(page)
    screenshot(page, "corrected-transcript.png")

    # undo puts back the last correction, then the one before it
    undo = page.get_by_role("button", name="Undo last edit")
    undo.click()
    expect(settled(page).locator(".text").nth(2)).to_have_text("Let us start with the budget.")
    undo.click()
    settled(page)
    expect(speakers).to_have_text(["Diane", "SPEAKER_01", "Diane", "SPEAKER_01"])
    expect(undo).to_be_hidden()

    # correct again (the name from the list of speakers), then reload: the server has both
    page.get_by_role("button", name="Rename SPEAKER_01").click()
    page.get_by_label("Name: type one").fill("Sheila")
    page.get_by_role("button", name="Rename", exact=True).click()
    settled(page)
    line(page, 0).locator(".text").click()
    editor.fill(HOSTILE_TEXT)
    editor.press("Enter")
    expect(settled(page).locator(".text").first).to_have_text(HOSTILE_TEXT)
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    job_row(page, "meeting.mp3").click()
    expect(texts.first).to_have_text(HOSTILE_TEXT)
    expect(speakers).to_have_text(["Diane", "Sheila", "Diane", "Sheila"])
    expect(people.nth(1)).to_contain_text("Sheila")
    assert_inert(page)

    # one line said by someone else
    line(page, 2).locator(".speaker").click()
    page.get_by_label("Name: type one").fill("Sheila")
    page.get_by_label("Only this line").check()
    expect(page.get_by_label("Remember this voice")).to_be_disabled()
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(settled(page).locator(".speaker")).to_have_text(["Diane", "Sheila", "Sheila", "Sheila"])
    page.context.close()


def test_someone_elses_correction_first_is_said_and_shown(browser: Browser, server: Server) -> None:
    from playwright.sync_api import expect

    job_id = diarized_job(server.store, "standup.mp3")
    page = open_job(browser, server, "standup.mp3")
    held: list[Any] = []  # the list's refreshes wait: the page must not learn of the other edit early
    page.route(re.compile(r"/jobs\?"), lambda route: held.append(route))
    other = httpx.patch(
        f"{server.url}/jobs/{job_id}/transcript",
        json={"revision": 0, "edits": [{"op": "text", "segment": 1, "text": "Their correction."}]},
    )
    assert other.status_code == 200, other.text
    line(page, 1).locator(".text").click()
    page.locator("textarea.editor").fill("Mine, too late.")
    page.keyboard.press("Enter")
    expect(page.locator("#alerts p")).to_contain_text("Someone else corrected this transcript first")
    expect(settled(page).locator(".text").nth(1)).to_have_text("Their correction.")
    expect(page.get_by_role("button", name="Undo last edit")).to_be_hidden()
    assert httpx.get(f"{server.url}/jobs/{job_id}").json()["revision"] == 1
    page.context.close()
