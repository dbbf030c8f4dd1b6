"""What `tfx serve` was asked to do, checked before anything listens: address, token, limits.

Light on purpose (no numpy, Pillow or onnxruntime): the CLI reads its defaults at start-up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from transfusion_cli.errors import ConfigError
from transfusion_cli.limits import (
    SERVE_BODY_TIMEOUT_S,
    SERVE_MAX_CONCURRENCY,
    SERVE_MAX_FILE_MB,
    SERVE_MAX_IMAGES,
    SERVE_MAX_REQUEST_MB,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# The request limits are declared with tfx's other bounds (transfusion_cli/limits.py).
MAX_IMAGES = SERVE_MAX_IMAGES
MAX_FILE_MB = SERVE_MAX_FILE_MB
MAX_REQUEST_MB = SERVE_MAX_REQUEST_MB
DEFAULT_MAX_CONCURRENCY = SERVE_MAX_CONCURRENCY
BODY_TIMEOUT_S = SERVE_BODY_TIMEOUT_S
MIN_TOKEN_LENGTH = 16
MB = 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """The model, where to listen, who may call, and the limits on what a request may hold."""

    model: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    insecure_no_token: bool = False
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_images: int = MAX_IMAGES
    max_file_bytes: int = MAX_FILE_MB * MB
    max_request_bytes: int = MAX_REQUEST_MB * MB
    provider: str = "auto"
    # Decisions as `tfx predict` makes them: the model's validated operating point unless one
    # of these overrides it (deploy/decisions.py).
    threshold: float | None = None
    operating_point: str | None = None
    # Requests that run the model at once (each run single-threaded on CPU): None = one per
    # CPU this process may use.
    workers: int | None = None
    body_timeout_s: float = BODY_TIMEOUT_S

    @property
    def max_pixels(self) -> int:
        """Largest decoded image (width x height): predict's limit ($TFX_MAX_IMAGE_PIXELS)."""
        from transfusion_cli.data.preprocess import max_image_pixels

        return max_image_pixels()

    @property
    def auth_required(self) -> bool:
        """Whether API calls need ``Authorization: Bearer TOKEN``."""
        return self.token is not None

    def validate(self) -> ServeSettings:
        """Refuse an exposed server without a token, a weak token, and impossible limits."""
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"--token must be at least {MIN_TOKEN_LENGTH} characters; make one "
                              "with: python -c 'import secrets; print(secrets.token_urlsafe())'")
        if self.token is not None and any(c.isspace() or not c.isprintable() for c in self.token):
            raise ConfigError("--token must be printable characters without spaces.")
        if not is_loopback(self.host) and self.token is None and not self.insecure_no_token:
            raise ConfigError(f"--host {self.host} lets other machines connect: give --token "
                              "TOKEN (clients send 'Authorization: Bearer TOKEN'), or pass "
                              "--insecure-no-token to serve patient images to anyone who can "
                              "reach it.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a port number (0-65535).")
        for flag, value in (("--max-concurrency", self.max_concurrency),
                            ("--max-images", self.max_images),
                            ("--max-file-mb", self.max_file_bytes),
                            ("--workers", self.workers or 1)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1.")
        if self.max_request_bytes < self.max_file_bytes:
            raise ConfigError("--max-request-mb must be at least --max-file-mb.")
        return self
