"""Receiving a multipart upload without holding it in memory or leaving a file behind.

Litestar's own form parsing would keep every text field in memory however large, and caps only the whole
request. Here the body is parsed as it streams in (with the same ``multipart`` parser Litestar uses): the
``file`` part is held in memory up to 64 KiB, then goes to an anonymous temporary file in 1 MiB writes,
and is refused (413) as soon as it passes the cap; text fields are small and capped. The temporary file has
no name on disk (``TemporaryFile`` unlinks it at once), so it disappears when closed, or when the process
dies. It exists so the audio can be probed (415) before any job is created, and then streamed into the job
store. Opening it takes one of the API's upload slots (:mod:`cesar_api.load_shedding`): past the cap on
uploads in flight, or out of open files, the upload is refused with 503; a client that trickles its body
never gets that far before the body timeout cuts it off.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any

import anyio.to_thread
from litestar import Request
from litestar.exceptions import InternalServerException
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

from cesar_api.load_shedding import SLOT_AFTER_BYTES, LoadShedder, is_out_of_files, out_of_files
from cesar_common.errors import BodyTimeoutError, ClientError, PayloadTooLargeError
from cesar_common.text import without_control_characters

__all__ = ["FILE_FIELD", "MULTIPART_OVERHEAD", "read_json_body", "receive_upload"]

FILE_FIELD = "file"
WRITE_CHUNK = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
#: room for the text fields and multipart framing on top of the file cap
MULTIPART_OVERHEAD = MAX_PARTS * (MAX_FIELD_BYTES + 8 * 1024)
MAX_JSON_BYTES = 64 * 1024


@dataclass
class Upload:
    """A received upload: the audio in ``file`` (positioned at 0) and the form's text fields."""

    file: IO[bytes] = field(default_factory=io.BytesIO)
    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    #: the fields that may come several times (OpenAI's ``timestamp_granularities[]``), in order
    lists: dict[str, list[str]] = field(default_factory=dict)


@asynccontextmanager
async def receive_upload(
    request: Request[Any, Any, Any],
    *,
    max_bytes: int,
    file_field: str = FILE_FIELD,
    repeatable: frozenset[str] = frozenset(),
) -> AsyncIterator[Upload]:
    """Parse the multipart body of ``request``; the temporary file is closed (gone) on leaving. The audio
    comes in the part named ``file_field``; the fields in ``repeatable`` may come more than once."""
    _content_type, params = request.content_type
    boundary = params.get("boundary")
    if not boundary:
        raise ClientError("multipart body without a boundary in its Content-Type")
    spool = _Spool(request.app.state.load)
    stream = request.stream()
    try:
        upload = Upload()
        try:
            await _parse(stream, boundary, upload, spool, max_bytes, file_field, repeatable)
        except BodyTimeoutError:
            raise  # no more of the body is coming soon enough to wait for it
        except ClientError:
            await _drain(stream)
            raise
        # the probe's messages name the file it read: the client's name, not an fd
        upload.file = await spool.finish(upload.filename or "the upload")
        yield upload
    finally:
        spool.close()


class _NamedBytes(io.BytesIO):
    name = "the upload"


class _Spool:
    """The file part: in memory up to :data:`SLOT_AFTER_BYTES`, then in an anonymous temporary file that
    holds one of the API's upload slots until the upload is done."""

    def __init__(self, shedder: LoadShedder) -> None:
        self._shedder = shedder
        self._pending = bytearray()  # not yet written: one thread hop per MiB, not per network chunk
        self._file: IO[bytes] | None = None
        self._slot = False

    async def add(self, data: bytes | bytearray) -> None:
        self._pending += data
        if self._file is None:
            if len(self._pending) < SLOT_AFTER_BYTES:
                return
            self._open()
        if len(self._pending) >= WRITE_CHUNK:
            await self._flush()

    def _open(self) -> None:
        self._shedder.take_upload_slot()
        self._slot = True
        try:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        except OSError as exc:
            if not is_out_of_files(exc):
                raise
            self._shedder.note_refusal("open_files")
            raise out_of_files() from exc

    async def _flush(self) -> None:
        if self._file is not None and self._pending:
            await anyio.to_thread.run_sync(self._file.write, self._pending)
            self._pending = bytearray()

    async def finish(self, name: str) -> IO[bytes]:
        """The whole file part, positioned at 0, named ``name`` for the probe's messages."""
        if self._file is None:
            memory = _NamedBytes(self._pending)
            memory.name = name
            return memory
        await self._flush()
        self._file.seek(0)
        self._file.raw.name = name  # type: ignore[attr-defined]
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._slot:
            self._slot = False
            self._shedder.release_upload_slot()


async def _parse(
    stream: AsyncIterator[bytes],
    boundary: str,
    upload: Upload,
    spool: _Spool,
    max_bytes: int,
    file_field: str,
    repeatable: frozenset[str],
) -> None:
    text = bytearray()
    segment: MultipartSegment | None = None
    seen_file = False
    try:
        with PushMultipartParser(boundary, max_segment_count=MAX_PARTS) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment = event
                        if event.name == file_field:
                            if seen_file:
                                raise ClientError(f"the form has more than one `{file_field}` part")
                            seen_file = True
                            upload.filename = _basename(event.filename)
                            media_type = without_control_characters(event.content_type or "")
                            upload.content_type = media_type.strip()[:255] or None
                        elif event.filename is not None:  # a file under another name: the wrong door's
                            raise _no_audio(
                                file_field,
                                f"the form part `{_shown(event.name)}` holds a file: send the audio in the "
                                f"`{file_field}` part",
                            )
                        elif event.name in upload.fields and event.name not in repeatable:
                            raise ClientError(f"the form field `{_shown(event.name)}` is given twice")
                    elif event:
                        assert segment is not None
                        if segment.name == file_field:
                            upload.size += len(event)
                            if upload.size > max_bytes:
                                raise PayloadTooLargeError(
                                    f"the upload is larger than the {max_bytes // (1024 * 1024)} MiB limit "
                                    "(CESAR_MAX_UPLOAD_MB)"
                                )
                            await spool.add(event)
                        else:
                            text += event
                            if len(text) > MAX_FIELD_BYTES:
                                raise ClientError(
                                    f"the form field `{_shown(segment.name)}` is longer than "
                                    f"{MAX_FIELD_BYTES // 1024} KiB (the audio goes in the "
                                    f"`{file_field}` part)"
                                )
                    else:  # end of a part
                        assert segment is not None
                        if segment.name in repeatable:
                            upload.lists.setdefault(segment.name, []).append(_decode(text, segment))
                        elif segment.name != file_field:
                            upload.fields[segment.name] = _decode(text, segment)
                        text = bytearray()
                        segment = None
                if parser.closed:
                    break
    except ParserLimitReached as exc:
        raise ClientError(f"multipart body refused: {exc} (at most {MAX_PARTS} parts)") from exc
    except MultipartError as exc:
        raise ClientError(f"malformed multipart body: {exc}") from exc
    except InternalServerException as exc:
        # Litestar's word for a client that went away mid-body: nobody to answer, nothing to log as ours
        raise ClientError("the client disconnected before the upload was complete") from exc
    if not seen_file:
        raise _no_audio(file_field, f"the form has no `{file_field}` part: send the audio as `{file_field}`")


def _no_audio(file_field: str, message: str) -> ClientError:
    """The audio is not where this route reads it; ``extra`` names the part that should hold it (what
    OpenAI's errors call ``param``)."""
    return ClientError(message, extra={"field": file_field})


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read what is left of the body (bounded by the app's request size limit), so that a client still
    sending gets the error response rather than a reset connection. The same generator must go on: a new
    one would wait for body that has already arrived."""
    with suppress(Exception):  # the body limit ends it with a 413 of its own; nothing to add
        async for _chunk in stream:
            pass


def _decode(data: bytearray, segment: MultipartSegment) -> str:
    try:
        return data.decode(segment.charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise ClientError(f"the form field `{_shown(segment.name)}` is not valid text") from exc


def _shown(name: str) -> str:
    """A part's name as an error message may quote it (the client chose it)."""
    return without_control_characters(name)[:100]


def _basename(filename: str | None) -> str | None:
    """The client's file name without any directories it sent along (never a path)."""
    if not filename:
        return None
    name = without_control_characters(filename).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or None


async def read_json_body(request: Request[Any, Any, Any], *, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON body of ``request`` (at most ``limit`` bytes), or a 400 saying why not."""
    import json

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"a JSON body may be at most {limit // 1024} KiB")
    if not body.strip():
        raise ClientError("the request body is empty: send a JSON object")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ClientError(f"JSON is malformed: {exc}") from exc
