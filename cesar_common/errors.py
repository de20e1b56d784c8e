"""One exception root for Cesar.

``ClientError`` means the request or the input is at fault (4xx, an ``error`` job that is not retried, a
non-zero CLI exit with a one-line message); ``ServerError`` means Cesar or its environment is (5xx).
Third-party errors (SQLAlchemy, PyAV, CTranslate2, httpx) are wrapped where they enter, with
``raise ... from exc`` so ``__cause__`` keeps the original.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "AuthError",
    "BodyTimeoutError",
    "CesarError",
    "ClientError",
    "ConflictError",
    "DatabaseBugError",
    "DatabaseError",
    "DeviceUnavailableError",
    "DownloadError",
    "ForbiddenError",
    "InvalidInputError",
    "LanguageError",
    "LimitExceededError",
    "ModelIntegrityError",
    "ModelNotAllowedError",
    "ModelNotFoundError",
    "ModelTooLargeError",
    "NotFoundError",
    "ObjectStoreError",
    "OutOfMemoryError",
    "OverloadedError",
    "PayloadTooLargeError",
    "SchemaOutdatedError",
    "ServerError",
    "StoredAudioError",
    "TranscriptionError",
    "URLRefusedError",
    "UnsupportedMediaError",
]


class CesarError(Exception):
    """Root of every error Cesar raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, extra: dict[str, Any] | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        #: more than a client may see (a driver's message naming hosts and files): for logs and the CLI
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message with its detail, for logs and the command line (never for an HTTP client)."""
        return f"{self.message} ({self.detail})" if self.detail else self.message


class ClientError(CesarError):
    """The caller's input is wrong; retrying the same thing will fail the same way."""

    status_code = 400
    code = "bad_request"


class ServerError(CesarError):
    """Cesar or its environment failed."""

    status_code = 500
    code = "internal_error"


# --- client kinds ---------------------------------------------------------------------------------
class NotFoundError(ClientError):
    status_code = 404
    code = "not_found"


class ConflictError(ClientError):
    status_code = 409
    code = "conflict"


class InvalidInputError(ClientError):
    status_code = 422
    code = "invalid_input"


class PayloadTooLargeError(ClientError):
    status_code = 413
    code = "too_large"


class UnsupportedMediaError(ClientError):
    """The bytes hold no decodable audio stream."""

    status_code = 415
    code = "unsupported_media"


class AudioDecodeError(ClientError):
    """Audio that could not be decoded, or holds no audio at all."""

    status_code = 422
    code = "decode_failed"


class AudioTooLongError(ClientError):
    """Audio longer than the server accepts (``CESAR_MAX_AUDIO_SECONDS``)."""

    status_code = 422
    code = "audio_too_long"


class ModelNotAllowedError(InvalidInputError):
    code = "model_not_allowed"


class ModelNotFoundError(ClientError):
    """A model name or path that cannot be loaded (unknown, or not downloadable offline)."""

    status_code = 422
    code = "model_not_found"


class DeviceUnavailableError(ClientError):
    """An explicit device or compute type this machine cannot provide."""

    status_code = 422
    code = "device_unavailable"


class URLRefusedError(InvalidInputError):
    """A URL that is malformed or points where Cesar may not go."""

    code = "url_refused"


class DownloadError(ClientError):
    """A URL job's audio could not be fetched."""

    status_code = 422
    code = "download_failed"


class LanguageError(InvalidInputError):
    code = "unknown_language"


class AuthError(ClientError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(ClientError):
    """A valid key that may not do this (a user key on a route for admin keys)."""

    status_code = 403
    code = "forbidden"


class LimitExceededError(ClientError):
    """A key's limit refused the request (its queue, its audio per day, its requests per second): ``limit``
    names which, ``value`` its value; ``retry_after_seconds`` when waiting is known to help."""

    status_code = 429
    code = "limit_exceeded"

    def __init__(
        self, message: str, *, limit: str, value: float, retry_after_seconds: int | None = None
    ) -> None:
        super().__init__(message, extra={"limit": limit, "value": value})
        self.retry_after_seconds = retry_after_seconds


class BodyTimeoutError(ClientError):
    """A request body that stalled or trickled (``CESAR_BODY_TIMEOUT_SECONDS``)."""

    status_code = 408
    code = "body_timeout"


# --- server kinds ---------------------------------------------------------------------------------
class DatabaseError(ServerError):
    """The job database cannot be reached, or cannot write (full disk, locked, gone): try again later."""

    status_code = 503
    code = "database_unavailable"


class DatabaseBugError(ServerError):
    """The database refused a statement (a constraint, a value, the SQL itself): a bug in Cesar, not an
    outage. Logged with its traceback; a worker fails the job rather than retrying it forever."""

    code = "internal_error"


class ObjectStoreError(ServerError):
    """The object store that holds audio (``CESAR_BLOB_URL``) cannot be reached, refused Cesar's credentials
    or has no such bucket: try again later. A worker hands its job back rather than failing it."""

    status_code = 503
    code = "object_store_unavailable"


class StoredAudioError(ServerError):
    """A job's stored audio is missing or is not what was stored (its size or sha256 differs): the job
    fails with this message rather than transcribing something else."""

    code = "audio_lost"


class SchemaOutdatedError(ServerError):
    """The database schema is behind the code."""

    status_code = 503
    code = "schema_outdated"


class ModelIntegrityError(ServerError):
    """A model file that is not what was installed (corrupt, truncated or replaced)."""

    code = "model_corrupt"


class OutOfMemoryError(ServerError):
    status_code = 507
    code = "out_of_memory"


class ModelTooLargeError(OutOfMemoryError):
    """A model that would not fit in a worker's memory budget even alone (CESAR_WORKER_MODEL_MEMORY_MB)."""

    code = "model_too_large"


class OverloadedError(ServerError):
    """A resource the API needs ran out (uploads in flight, open files, connections): the request was
    refused whole, and may be sent again after ``retry_after_seconds``."""

    status_code = 503
    code = "overloaded"
    retry_after_seconds: ClassVar[int] = 5


class TranscriptionError(ServerError):
    code = "transcription_failed"
