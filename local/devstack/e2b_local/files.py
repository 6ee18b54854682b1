"""envd's HTTP file API: `GET /files` and `POST /files` (`infra:packages/envd/internal/api/`, download.go and
upload.go).

Downloads are sent as they are on disk (identity encoding, which every client accepts). Uploads come in two
forms, both taken as the SDK sends them: `application/octet-stream` (one file, `?path=`, streamed to disk,
optionally `Content-Encoding: gzip`) and `multipart/form-data` (parts named `file`; the path is the `path`
query when there is one, else each part's filename *with its directories*, which is how `write_files` sends
several files at once). `X-Metadata-<key>` headers become the files' metadata. Errors are
`{"code": <status>, "message": ...}` with envd's statuses: 404 missing, 400 a directory or a bad request,
401 an unknown user.
"""

from __future__ import annotations

import email.message
import email.utils
import mimetypes
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from devstack.e2b_local.envd import HTTP_STATUS, known_user
from devstack.e2b_local.errors import ApiError, RpcError
from devstack.e2b_local.fs import USER, validate_metadata
from devstack.e2b_local.state import Sandbox

MAX_MULTIPART = 64 * 1024 * 1024  # a multipart body is parsed in memory; stream bigger files as octet-stream
METADATA_PREFIX = "x-metadata-"


class FilesExchange(Protocol):
    """What the file API needs from the HTTP layer."""

    def header(self, name: str) -> str | None: ...

    def header_items(self) -> list[tuple[str, str]]: ...

    def send_json(self, status: int, body: Any, content_type: str = "application/json") -> None: ...

    def send_file(self, path: Path, size: int, headers: dict[str, str]) -> None: ...

    def upload_chunks(self) -> Iterator[bytes]: ...


def serve(exchange: FilesExchange, sandbox: Sandbox, method: str, query: dict[str, list[str]]) -> None:
    try:
        home = _home(query)
        if method == "GET":
            _download(exchange, sandbox, _param(query, "path"), home)
        elif method == "POST":
            _upload(exchange, sandbox, query, home)
        else:
            raise ApiError(405, f"method {method} is not allowed on /files")
    except RpcError as error:
        raise ApiError(HTTP_STATUS.get(error.code, 500), error.message) from error


def _home(query: dict[str, list[str]]) -> str:
    """`username` is sent only when the caller passes `user=` (envd >= 0.4.0); unknown users get 401."""
    _, home = known_user(_param(query, "username") or USER, lambda message: ApiError(401, message))
    return home


def _download(exchange: FilesExchange, sandbox: Sandbox, path: str, home: str) -> None:
    target, sandbox_path, info = sandbox.fs.readable(path, home)
    name = sandbox_path.rsplit("/", 1)[-1]
    headers = {
        "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "Content-Disposition": _inline(name),
        "Last-Modified": email.utils.formatdate(info.st_mtime, usegmt=True),
        "Vary": "Accept-Encoding",
    }
    exchange.send_file(target, info.st_size, headers)


def _upload(exchange: FilesExchange, sandbox: Sandbox, query: dict[str, list[str]], home: str) -> None:
    metadata = {
        name[len(METADATA_PREFIX) :].lower(): value
        for name, value in exchange.header_items()
        if name.lower().startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX)
    }
    validate_metadata(metadata)
    chunks = _decoded(exchange.upload_chunks(), exchange.header("Content-Encoding"))
    content_type = exchange.header("Content-Type") or ""
    media_type, boundary = _media_type(content_type)
    path = _param(query, "path") if "path" in query else None
    if media_type == "application/octet-stream":
        if path is None:
            raise ApiError(400, "path query parameter is required for raw body upload")
        written = [sandbox.fs.write(path, chunks, metadata, home)]
    elif media_type.startswith("multipart/"):
        if not boundary:
            raise ApiError(400, "error parsing multipart form: no multipart boundary param in Content-Type")
        written = []
        seen: set[str] = set()
        for name, filename, data in parse_multipart(_bounded(chunks, MAX_MULTIPART), boundary):
            if name != "file":
                continue
            target = path if path is not None else filename
            if target is None:
                raise ApiError(400, "filename not found in Content-Disposition header")
            sandbox_path = sandbox.fs.expand(target, home)
            if sandbox_path in seen:
                raise ApiError(
                    400,
                    f"you cannot upload multiple files to the same path '{sandbox_path}' in one upload "
                    "request, only the first specified file was uploaded",
                )
            seen.add(sandbox_path)
            written.append(sandbox.fs.write(target, [data], metadata, home))
    else:
        raise ApiError(
            400,
            f"unsupported content type: {content_type}, "
            "expected multipart/form-data or application/octet-stream",
        )
    exchange.send_json(200, written)


def parse_multipart(body: bytes, boundary: str) -> Iterator[tuple[str | None, str | None, bytes]]:
    """(form name, filename as sent, data) of each part. Filenames keep their directories (Go's
    `FileNameWithPath`, unlike `Part.FileName`); data is taken byte for byte."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 2:
        raise ApiError(400, "error reading form: multipart: NextPart: EOF")
    for section in sections[1:]:
        if section.startswith(b"--"):
            return  # the closing delimiter
        _, newline, part = section.partition(b"\r\n")  # the rest of the delimiter line (transport padding)
        head, separator, data = part.partition(b"\r\n\r\n")
        if not newline or not separator:
            if part.startswith(b"\r\n"):  # a part with no headers at all
                yield None, None, part[2:]
                continue
            raise ApiError(400, "error reading form: malformed multipart part")
        headers = email.message.Message()
        for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip()] = value.strip()
        yield (
            _disposition_param(headers, "name"),
            _disposition_param(headers, "filename"),
            data,
        )
    raise ApiError(400, "error reading form: multipart: NextPart: EOF")


def _disposition_param(headers: email.message.Message, name: str) -> str | None:
    value = headers.get_param(name, header="content-disposition")
    if value is None:
        return None
    return email.utils.collapse_rfc2231_value(value)


def _media_type(content_type: str) -> tuple[str, str | None]:
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    return content_type.split(";", 1)[0].strip().lower(), boundary if isinstance(boundary, str) else None


def _decoded(chunks: Iterable[bytes], content_encoding: str | None) -> Iterator[bytes]:
    encoding = (content_encoding or "").split(";", 1)[0].strip().lower()
    if encoding in ("", "identity"):
        yield from chunks
        return
    if encoding != "gzip":
        raise ApiError(400, f"unsupported Content-Encoding: {content_encoding}, supported: [gzip]")
    decompressor = zlib.decompressobj(wbits=31)
    try:
        for chunk in chunks:
            while chunk:
                yield decompressor.decompress(chunk, 1024 * 1024)
                chunk = decompressor.unconsumed_tail
        yield decompressor.flush()
    except zlib.error as error:
        raise ApiError(400, f"error decompressing request body: {error}") from error


def _bounded(chunks: Iterable[bytes], limit: int) -> bytes:
    collected = bytearray()
    for chunk in chunks:
        collected += chunk
        if len(collected) > limit:
            raise ApiError(
                413, f"multipart uploads are limited to {limit} bytes here; upload a file object instead"
            )
    return bytes(collected)


def _inline(name: str) -> str:
    """Go's mime.FormatMediaType("inline", {"filename": name})."""
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'inline; filename="{name}"'
    return f"inline; filename*=utf-8''{urllib.parse.quote(name, safe='')}"


def _param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""
