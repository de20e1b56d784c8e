"""The one exception mapper: every error leaves the API as the same JSON shape, without a traceback.

``{"status_code": 404, "detail": "no job with id 'x'", "code": "not_found", "extra": null}``

Cesar's own errors carry their status and code; Litestar's (routing, validation, body size) are mapped to
the same shape; anything else is a bug, logged here with its traceback and answered with a generic 500.
The compatible dialects (:mod:`cesar_api.compat`) classify errors with :func:`problem_of` too and only
write them in their own shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, get_args, get_origin

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from cesar_api.load_shedding import is_out_of_files, out_of_files
from cesar_api.schemas import ErrorOut
from cesar_common.errors import (
    AuthError,
    BodyTimeoutError,
    CesarError,
    DatabaseError,
    LimitExceededError,
    ObjectStoreError,
    OverloadedError,
    ServerError,
)

__all__ = ["error_responses", "handle_exception", "problem_of"]

logger = logging.getLogger("cesar.api")

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(status_code: int, detail: str, code: str, extra: Any = None) -> dict[str, Any]:
    return {"status_code": status_code, "detail": detail, "code": code, "extra": extra}


@dataclass(frozen=True, slots=True)
class Problem:
    """What went wrong, in any dialect: the HTTP status, Cesar's code, a one-line detail."""

    status: int
    code: str
    detail: str
    extra: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def problem_of(request: Request[Any, Any, Any], exc: Exception) -> Problem:
    """Classify ``exc``, logging what a person must see (outages; bugs with their traceback)."""
    headers: dict[str, str] = {}
    extra: Any
    if not isinstance(exc, CesarError) and is_out_of_files(exc):  # EMFILE where no one expected it
        request.app.state.load.note_refusal("open_files")
        exc = out_of_files()
    if isinstance(exc, CesarError):
        status, code, detail, extra = exc.status_code, exc.code, exc.message, exc.extra or None
        if isinstance(exc, DatabaseError | ObjectStoreError):  # an outage: the driver's words, no traceback
            logger.error("%s %s: %s", request.method, request.url.path, exc.describe())
        elif isinstance(exc, OverloadedError):  # load shed on purpose: LoadShedder logs each episode
            pass
        elif isinstance(exc, ServerError):  # a bug: with the traceback of its cause
            logger.error(
                "%s %s: %s", request.method, request.url.path, exc.describe(), exc_info=exc.__cause__
            )
        if isinstance(exc, AuthError):
            headers["WWW-Authenticate"] = 'Bearer realm="cesar"'
        if isinstance(exc, OverloadedError | LimitExceededError) and exc.retry_after_seconds is not None:
            headers["Retry-After"] = str(exc.retry_after_seconds)
        if isinstance(exc, OverloadedError | BodyTimeoutError):
            headers["Connection"] = "close"  # the rest of the body is not read: this connection is done
    elif isinstance(exc, ValidationException):
        status, code = 400, "validation_error"
        extra = _with_choices(request, exc.extra)
        detail = _validation_detail(exc.detail, extra)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        code = _CODES_BY_STATUS.get(status, "http_error")
        detail = _http_detail(exc)
        extra = exc.extra or None
        headers.update(exc.headers or {})
        if status >= 500:
            logger.error("%s %s: %s", request.method, request.url.path, exc.detail, exc_info=exc)
    else:
        logger.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        status, code, detail, extra = 500, "internal_error", "internal server error", None
    return Problem(status, code, detail, extra, headers)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Map any exception to Cesar's error shape (registered for ``Exception`` on the app)."""
    problem = problem_of(request, exc)
    return Response(
        content=error_body(problem.status, problem.detail, problem.code, problem.extra),
        status_code=problem.status,
        headers=problem.headers or None,
        media_type="application/json",
    )


def _with_choices(request: Request[Any, Any, Any], extra: Any) -> Any:
    """Litestar's problems, where one says "Invalid enum value 'docx'", with the values the parameter takes
    (its type is one of the choice lists of :mod:`cesar_common.choices`)."""
    if not isinstance(extra, list):
        return extra
    handler = request.scope.get("route_handler")
    parameters = handler.parsed_fn_signature.parameters if handler is not None else {}
    problems: list[Any] = []
    for problem in extra:
        if isinstance(problem, dict) and str(problem.get("message", "")).startswith("Invalid enum value"):
            parameter = parameters.get(str(problem.get("key")))
            choices = _literal_values(parameter.annotation) if parameter is not None else ()
            if choices:
                problem = {**problem, "message": f"{problem['message']}: use one of {', '.join(choices)}"}
        problems.append(problem)
    return problems


def _literal_values(annotation: Any) -> tuple[str, ...]:
    """The values of the ``Literal`` in ``annotation`` (``Literal[...] | None`` too); none if it has none."""
    if get_origin(annotation) is Literal:
        return tuple(str(value) for value in get_args(annotation))
    for arg in get_args(annotation):
        if values := _literal_values(arg):
            return values
    return ()


def _validation_detail(summary: str, extra: Any) -> str:
    """Litestar's "Validation failed for GET /jobs" plus the first problem, so the line alone helps."""
    problems = extra if isinstance(extra, list) else []
    first = next((p for p in problems if isinstance(p, dict) and p.get("message")), None)
    if first is None:
        return summary
    source = first.get("source")
    where = f" {getattr(source, 'value', source)}" if source else ""
    key = f" parameter {first['key']!r}" if first.get("key") else ""
    label = f"invalid{where}{key}".strip()
    return f"{summary}: {label}: {first['message']}"


def _http_detail(exc: HTTPException) -> str:
    if exc.status_code == 413:
        return "request body too large"
    if exc.status_code == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        return "no such route"
    return exc.detail or HTTPStatus(exc.status_code).phrase


# --- OpenAPI documentation of the error responses ---------------------------------------------------
_DESCRIPTIONS = {
    400: ("Malformed request: bad JSON or multipart, wrong types, unknown fields", "validation_error"),
    401: ("Missing, wrong, revoked or expired API key (only on a server with keys)", "unauthorized"),
    403: ("The key may not do this: it needs an admin key", "forbidden"),
    404: ("No job with this id", "not_found"),
    409: ("The job is not in a state that allows this", "conflict"),
    413: ("The upload is larger than CESAR_MAX_UPLOAD_MB", "too_large"),
    415: (
        "The upload holds no decodable audio, or the body is neither multipart nor JSON",
        "unsupported_media",
    ),
    422: ("A value Cesar refuses: model outside the allowlist, refused URL, bad cursor", "invalid_input"),
    429: (
        "A limit of the key: its queued jobs, its audio hours per day or its requests per second (`limit` "
        "names it; `Retry-After` when waiting helps)",
        "limit_exceeded",
    ),
    408: ("The request body stalled: less than 64 KiB in CESAR_BODY_TIMEOUT_SECONDS", "body_timeout"),
    503: (
        "The job database cannot be reached, or the API is shedding load (`overloaded`: too many uploads in "
        "flight, connections or open files; send it again after `Retry-After` seconds)",
        "database_unavailable",
    ),
}

_EXAMPLE_DETAILS = {
    400: "Validation failed for GET /jobs: invalid query parameter 'limit': Expected `int`, got `str`",
    401: "missing or invalid API key: send `Authorization: Bearer <key>`",
    403: "this needs an admin key",
    429: "key 'alice' has 20 jobs queued or running, its limit (max_queued): wait for one to finish",
    404: "no job with id '3f0c9a52-8d1e-4c53-9a43-1b2f0f6c7d10'",
    409: "job 3f0c9a52-8d1e-4c53-9a43-1b2f0f6c7d10 is processing: it cannot be deleted until it ends",
    413: "the upload is larger than the 1024 MiB limit",
    415: "junk.mp3 is not an audio or video file FFmpeg can read",
    422: "model 'huge' is not allowed: use one of tiny.en, base.en, small.en",
    408: "the request body stalled: less than 64 KiB arrived in 30 s (CESAR_BODY_TIMEOUT_SECONDS)",
    503: "cannot reach the job database",
}


def error_responses(*statuses: int, auth: bool = True, **details: str) -> dict[int, ResponseSpec]:
    """ResponseSpecs for ``statuses``, plus 401 and 429 for routes behind the optional API key.

    ``details`` override the standard description of a status: ``error_responses(404, 409, s409="...")``.
    """
    specs: dict[int, ResponseSpec] = {}
    for status in sorted({*statuses, 401, 429} if auth else set(statuses)):
        description, code = _DESCRIPTIONS[status]
        description = details.get(f"s{status}", description)
        example = error_body(status, _EXAMPLE_DETAILS[status], code)
        specs[status] = ResponseSpec(
            data_container=ErrorOut,
            generate_examples=False,
            description=description,
            examples=[Example(summary=description, value=example)],
        )
    return specs
