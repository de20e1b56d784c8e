"""What the compatible APIs take and answer, for their OpenAPI documentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from pydantic import BaseModel, ConfigDict, Field

from cesar_common.choices import OPENAI_GRANULARITIES, OPENAI_GRANULARITY_FIELD, OPENAI_RESPONSE_FORMATS
from cesar_common.job_options import option_specs

__all__ = [
    "AsrOperation",
    "AsrTranscribeOperation",
    "OpenAITranscriptionOperation",
    "OpenAITranslationOperation",
    "asr_errors",
    "decoding_fields",
    "openai_errors",
]


class _Schema(BaseModel):
    model_config = ConfigDict(defer_build=True)


class OpenAIErrorDetail(_Schema):
    message: str = Field(description="What went wrong, for a person.")
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(description="The request field at fault, if one is.", examples=["model"])
    code: str | None = Field(examples=["model_not_found"])


class OpenAIErrorOut(_Schema):
    """Every error on ``/v1``, as OpenAI's API answers them."""

    error: OpenAIErrorDetail


class AsrErrorOut(_Schema):
    """Every error on ``/asr`` and ``/detect-language``, as whisper-asr-webservice (FastAPI) answers them."""

    detail: str = Field(description="What went wrong, for a person.")


def openai_errors(*rows: tuple[int, str, str, str | None]) -> dict[int, ResponseSpec]:
    """ResponseSpecs for ``(status, description, type, code)`` rows."""
    return {
        status: ResponseSpec(
            data_container=OpenAIErrorOut,
            generate_examples=False,
            description=description,
            examples=[
                Example(
                    summary=description,
                    value={"error": {"message": description, "type": kind, "param": None, "code": code}},
                )
            ],
        )
        for status, description, kind, code in rows
    }


def asr_errors(rows: dict[int, str]) -> dict[int, ResponseSpec]:
    """ResponseSpecs for ``{status: description}``."""
    return {
        status: ResponseSpec(
            data_container=AsrErrorOut,
            generate_examples=False,
            description=description,
            examples=[Example(summary=description, value={"detail": description})],
        )
        for status, description in rows.items()
    }


# Both APIs read their multipart bodies themselves (streamed, capped), so Litestar sees no body parameter to
# document: these operation classes describe them.
def _binary(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
            "description": description}  # fmt: skip


def openai_form(*, transcription: bool) -> dict[str, Any]:
    """The multipart form of ``/v1/audio/transcriptions`` (or ``/translations``), as OpenAI documents it."""
    properties: dict[str, Any] = {
        "file": _binary("The audio or video file (wav, flac, mp3, m4a, ogg, webm, ...)."),
        "model": {
            "type": "string",
            "description": "`whisper-1` (the default model), an allowed model or an "
            "alias (`GET /v1/models`).",
            "examples": ["whisper-1"],
        },
        "prompt": {"type": "string", "description": "Text that sets the vocabulary and style."},
        "response_format": {"type": "string", "enum": list(OPENAI_RESPONSE_FORMATS), "default": "json"},
        **decoding_fields(),
    }
    if transcription:
        properties["language"] = {"type": "string", "description": "ISO-639-1 code, e.g. `en`."}
        properties[OPENAI_GRANULARITY_FIELD] = {
            "type": "array",
            "items": {"type": "string", "enum": list(OPENAI_GRANULARITIES)},
            "description": "With `response_format=verbose_json`: `word`, `segment` or both.",
        }
        properties["stream"] = {"type": "boolean", "default": False,
                                "description": "Server-sent events as segments are decoded."}  # fmt: skip
    return {"type": "object", "properties": properties, "required": ["file", "model"],
            "additionalProperties": False}  # fmt: skip


def decoding_fields() -> dict[str, Any]:
    """Cesar's decoding options as form fields or query parameters (text: ``0,0.2`` for a list)."""
    return {
        spec.name: {"type": "string", "description": spec.doc.description}
        for spec in option_specs()
        if spec.decoding
    }


def _multipart(schema: dict[str, Any], description: str) -> RequestBody:
    return RequestBody(
        required=True,
        description=description,
        content={"multipart/form-data": OpenAPIMediaType(schema=schema)},  # type: ignore[arg-type]
    )


@dataclass
class OpenAITranscriptionOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _multipart(openai_form(transcription=True), "The audio and its options.")


@dataclass
class OpenAITranslationOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _multipart(openai_form(transcription=False), "The audio and its options.")


@dataclass
class AsrOperation(Operation):
    def __post_init__(self) -> None:
        schema = {"type": "object", "properties": {"audio_file": _binary("The audio or video file.")},
                  "required": ["audio_file"], "additionalProperties": False}  # fmt: skip
        self.request_body = _multipart(schema, "The audio (options go in the query).")


@dataclass
class AsrTranscribeOperation(AsrOperation):
    """``/asr``: its query parameters, and Cesar's decoding options as more of them (read from the query
    by name: the handler does not declare each)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parameters = [
            *(self.parameters or []),
            *(
                Parameter(
                    name=name,
                    param_in="query",
                    required=False,
                    schema=Schema(type=OpenAPIType.STRING),
                    description=field["description"],
                )
                for name, field in decoding_fields().items()
            ),
        ]
