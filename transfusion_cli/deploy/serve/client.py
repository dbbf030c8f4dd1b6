"""A dependency-free Python client of `tfx serve` (urllib): post images, read the answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from transfusion_cli.deploy.serve.uploads import FIELD


def encode_multipart(files: Sequence[tuple[str, bytes]], field: str = FIELD
                     ) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request with one part per file; quotes
    and line breaks in names are percent-encoded, as browsers do."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, content in files:
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                f"filename=\"{quoted}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode("utf-8") + bytes(content) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 120
            ) -> tuple[int, dict[str, str], Any]:
    """(status, headers with lower-case names, parsed JSON body or raw bytes) of one request;
    HTTP errors are answers too, not exceptions."""
    call = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            status, raw, found = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, found = error.code, error.read(), error.headers
    names = {key.lower(): value for key, value in found.items()}
    kind = names.get("content-type", "")
    return status, names, json.loads(raw) if kind.startswith("application/json") else raw


def post_images(base_url: str, files: Sequence[tuple[str, bytes]], token: str | None = None,
                timeout: float = 120) -> tuple[int, dict[str, str], Any]:
    """POST ``files`` ((name, content) pairs) to ``base_url``/v1/predict."""
    body, content_type = encode_multipart(files)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return request(base_url.rstrip("/") + "/v1/predict", "POST", body, headers, timeout)
