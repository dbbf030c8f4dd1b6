"""Read a multipart/form-data request body into memory, enforcing the limits as it streams.

Starlette's form parser spools files over 1 MB to a temporary file on disk; patient images must
never touch the disk, so the body goes through python-multipart's streaming parser into bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

FIELD = "files"
MAX_NAME = 200
_SEPARATORS = re.compile(r"[\\/]")


class UploadError(Exception):
    """A request body that is refused: HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """One uploaded file: a display name (never a path) and its content."""

    name: str
    content: bytearray = field(default_factory=bytearray)


def megabytes(size: int) -> str:
    """``52428800`` -> ``"50 MB"`` (MB = 2**20 bytes, as the --max-*-mb options count)."""
    return f"{size / 2**20:.3g} MB"


def display_name(raw: str, index: int) -> str:
    """A client's file name as a label: its last path component, without control or format
    characters, at most ``MAX_NAME`` long; ``image N`` when nothing is left."""
    last = _SEPARATORS.split(raw)[-1]
    cleaned = "".join(c for c in last if unicodedata.category(c)[0] != "C").strip()
    return cleaned[:MAX_NAME] or f"image {index + 1}"


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header; UploadError(415) otherwise."""
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the images as multipart/form-data, one part named "
                          f"'{FIELD}' per image (curl -F {FIELD}=@photo.jpg ...).")
    return boundary


class _Collector:
    """python-multipart callbacks that keep each file part in memory, within the limits."""

    def __init__(self, max_images: int, max_file_bytes: int):
        self.max_images, self.max_file_bytes = max_images, max_file_bytes
        self.uploads: list[Upload] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._current: Upload | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._field,
                "on_header_value": self._value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data}

    def _part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name != FIELD or b"filename" not in params:
            raise UploadError(400, f"unexpected form field {name[:40]!r}: send each image as a "
                              f"file part named '{FIELD}'.")
        if len(self.uploads) >= self.max_images:
            raise UploadError(400, f"more than {self.max_images} images in one request; send "
                              f"at most {self.max_images} per request.")
        raw = params[b"filename"].decode("utf-8", "replace")
        self._current = Upload(display_name(raw, len(self.uploads)))
        self.uploads.append(self._current)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        self._current.content += data[start:end]
        if len(self._current.content) > self.max_file_bytes:
            raise UploadError(413, f"image {len(self.uploads)} is larger than the "
                              f"{megabytes(self.max_file_bytes)} a file may be.")


class RequestBody:
    """A request body read from ASGI ``receive`` as it arrives, knowing when it has ended."""

    def __init__(self, receive: Callable[[], Awaitable[dict]]):
        self.receive = receive
        self.ended = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces, in order."""
        while not self.ended:
            message = await self.receive()
            if message["type"] != "http.request":  # the client went away
                self.ended = True
                raise UploadError(400, "the client disconnected during the upload.")
            self.ended = not message.get("more_body", False)
            if message.get("body"):
                yield message["body"]

    async def drain(self, limit: int) -> None:
        """Read and drop what is left of the body, at most ``limit`` bytes, so that a client
        that sends everything before reading the answer gets it instead of a reset."""
        dropped = 0
        async for chunk in self.chunks():
            dropped += len(chunk)
            if dropped > limit:
                return


async def read_uploads(chunks: AsyncIterator[bytes], content_type: str | None,
                       content_length: str | None, max_images: int, max_file_bytes: int,
                       max_request_bytes: int) -> list[Upload]:
    """The files of a multipart body, in order; UploadError for anything over the limits."""
    boundary = boundary_of(content_type)
    too_large = UploadError(413, f"request body larger than {megabytes(max_request_bytes)}; "
                            "send fewer or smaller images per request.")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "Content-Length is not a number.") from None
        if declared > max_request_bytes:
            raise too_large
    collector = _Collector(max_images, max_file_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_request_bytes:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart's parse errors: a malformed body
        raise UploadError(400, f"malformed multipart body ({type(exc).__name__}); send the "
                          f"images as multipart/form-data parts named '{FIELD}'.") from None
    if not collector.uploads:
        raise UploadError(400, f"no images: send one or more file parts named '{FIELD}'.")
    return collector.uploads
