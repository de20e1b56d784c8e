"""OpenAPI at ``/docs/openapi.json`` and Swagger UI at ``/docs``, working with no internet.

Litestar emits OpenAPI 3.1, which Swagger UI renders from version 5; the ``swagger-ui-py`` package ships
those assets, served here under ``/docs/static`` instead of Litestar's default CDN links.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.router import Router
from litestar.static_files import create_static_files_router

from cesar_api.schemas import ErrorOut, HealthOut, UrlJobIn
from cesar_common import __version__
from cesar_common.job_json import JobOut

__all__ = ["openapi_config", "static_router"]

DOCS_PATH = "/docs"
STATIC_PATH = f"{DOCS_PATH}/static"

_DESCRIPTION = """\
Self-hosted speech-to-text with Whisper. Submit audio (`POST /transcribe`), follow the job
(`GET /jobs/{id}`), download the transcript (`GET /jobs/{id}/transcript?format=srt`).

Every error has the shape `{"status_code": 404, "detail": "...", "code": "not_found", "extra": null}`.
When the server sets `CESAR_API_KEY`, every route except `/health` and `/docs` needs
`Authorization: Bearer <key>`.

## Live transcription: the WebSocket `GET /live`

Audio transcribed while it is spoken (OpenAPI cannot describe a WebSocket: this is its description; the
manual's page "Live transcription" has it in full). All server messages are JSON text with a `type`.

1. **Client, first message (text)**: `{"type": "start", "model": "tiny.en", "language": "en", "task":
   "transcribe", "prompt": null, "word_timestamps": true, "vad": true, "audio": {"format": "pcm_s16le",
   "sample_rate": 16000}, "diarize": false, "callback_url": null, "idempotency_key": null}` (every field
   optional; `diarize` takes `num_speakers`, `min_speakers`, `max_speakers` as a job does;
   `audio.format` `pcm_s16le` is raw 16-bit mono PCM at `sample_rate`, `container` any file FFmpeg reads, as
   produced), or,
   after a lost connection, `{"type": "resume", "session_id": "<job id>", "last_segment": 11}`.
2. **Server**: `{"type": "session", "session_id": "<job id>", "audio_bytes": 0, "job": {...}}`: a resuming
   client sends its audio again from `audio_bytes`. When no worker takes a new session within
   `CESAR_LIVE_START_SECONDS`: `error` `no_worker` and close 1013.
3. **Client**: binary messages of audio (at most 1 MiB each), then `{"type": "stop"}`.
4. **Server events**: `tentative` (`text`, `start`: words not confirmed yet, replaced as they firm up);
   `segment` (`id` 0, 1, ..., `start`, `end`, `text`, `words`: confirmed, each once, in order); `job` (the job
   JSON, at changes); `error` (`code`, `message`); `final` (the final job), then close 1000. The transcript is
   then `GET /jobs/{id}/transcript` in any format.
5. **Close codes**: 1000 over; 1008 a bad message, unknown model or session; 1009 a message over 1 MiB; 1011
   a server failure; 1013 no worker free. A session without audio for `CESAR_LIVE_IDLE_SECONDS` ends with
   what was said; one longer than `CESAR_LIVE_MAX_SECONDS` ends there.

## OpenAI's Realtime API, transcription mode: the WebSocket `/v1/realtime`

OpenAI's current event shapes (`session.update` with `session.type` `transcription`,
`input_audio_buffer.append` / `commit` / `clear`; `session.created` / `updated`,
`input_audio_buffer.speech_started` / `speech_stopped` / `committed`,
`conversation.item.input_audio_transcription.delta` / `completed`, `error`), as the `openai` SDKs speak
them: `client.realtime.connect(extra_query={"intent": "transcription"})` with this server's `/v1` as the
base URL. Each connection is one live session, listed as a job (`audio_path` `realtime sess_...`). The
manual's page "OpenAI and whisper-asr-webservice" has it in full.
"""

TAGS = [
    Tag(name="Transcription", description="Submit audio: an upload or a URL."),
    Tag(name="Jobs", description="Follow, cancel and delete jobs; download transcripts."),
    Tag(name="Service", description="Health of the API, the database and the workers."),
]


def swagger_static_dir() -> Path:
    """The Swagger UI 5 assets inside the ``swagger-ui-py`` package (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: reinstall Cesar")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def openapi_config() -> OpenAPIConfig:
    swagger = SwaggerPlugin(
        path="/",
        js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
        css_url=f"{STATIC_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{STATIC_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{STATIC_PATH}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="Cesar",
        version=__version__,
        description=_DESCRIPTION,
        path=DOCS_PATH,
        render_plugins=[swagger, JsonPlugin(path="/openapi.json")],
        tags=TAGS,
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="Only when the server sets `CESAR_API_KEY`.",
                )
            }
        ),
    )


def static_router() -> Router:
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[swagger_static_dir()],
        include_in_schema=False,
        name="swagger-static",
    )


@functools.cache
def pydantic_components() -> dict[str, Any]:
    """The schemas of the API's models as Pydantic writes them.

    Litestar's own translation drops some constraints (a ``pattern`` on an optional string, ``extra="forbid"``
    as ``additionalProperties: false``); Pydantic's JSON Schema 2020-12 output is what OpenAPI 3.1 uses.
    """
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema(
        [
            (UrlJobIn, "validation"),
            (JobOut, "serialization"),
            (ErrorOut, "serialization"),
            (HealthOut, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    return dict(top.get("$defs", {}))


class _PydanticComponents:
    """Render-plugin mixin: the document goes out with :func:`pydantic_components` in it."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        # the dict is Litestar's cached document: updating it again is a no-op
        openapi_schema.setdefault("components", {}).setdefault("schemas", {}).update(pydantic_components())
        return super().render(request, openapi_schema)  # type: ignore[misc,no-any-return]


class SwaggerPlugin(_PydanticComponents, SwaggerRenderPlugin):
    pass


class JsonPlugin(_PydanticComponents, JsonRenderPlugin):
    pass
