"""ASGI middleware of `tfx serve`: a request id, security headers on every response, and an
access log that holds no patient data (request id, route, status, sizes, latency only)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

ACCESS_LOG = logging.getLogger("tfx.serve.access")
ERROR_LOG = logging.getLogger("tfx.serve.error")
REQUEST_ID = "x-request-id"
# No inline script or style, nothing from another origin; photos shown from the user's own
# disk (blob:) and heatmaps inlined in results (data:). Frames, forms elsewhere and plugins
# are all refused.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class ServeMiddleware:
    """Wraps the app: stamps each request with an id, adds ``SECURITY_HEADERS`` to every
    response, turns an unexpected exception into a 500 that names only the request id, and
    writes one access-log line per request."""

    def __init__(self, app: ASGIApp, routes: Collection[str]):
        self.app = app
        self.routes = frozenset(routes)  # logged by name; any other path is logged as "-"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        seen = {"in": 0, "out": 0, "status": 0, "started": False}

        async def counting_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen["in"] += len(message.get("body", b""))
            return message

        async def secured_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"], seen["started"] = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {name for name, _ in SECURITY_HEADERS}]
                message = dict(message, headers=[*headers, *SECURITY_HEADERS,
                                                  (REQUEST_ID.encode(), request_id.encode())])
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, secured_send)
        except Exception as exc:  # never a traceback: its text could name a patient's file
            ERROR_LOG.error("request_id=%s internal error %s", request_id, type(exc).__name__)
            if not seen["started"]:
                await error_response(secured_send, 500, "internal error; the server log names "
                                     f"this request {request_id}.", request_id)
        finally:
            route = scope.get("path", "") if scope.get("path") in self.routes else "-"
            ACCESS_LOG.info("request_id=%s method=%s route=%s status=%s in_bytes=%d "
                            "out_bytes=%d latency_ms=%.1f", request_id, scope.get("method", "-"),
                            route, seen["status"], seen["in"], seen["out"],
                            (time.perf_counter() - start) * 1e3)


async def error_response(send: Callable, status: int, message: str, request_id: str,
                         headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send ``{"error": message, "request_id": ...}`` with ``status``."""
    body = json.dumps(error_body(message, request_id)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def error_body(message: str, request_id: str | None) -> dict[str, Any]:
    """The JSON of every refused request."""
    return {"error": message, "request_id": request_id}
