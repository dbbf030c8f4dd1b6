"""`tfx serve`: a web page and an HTTP API for an exported ONNX model (no torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from transfusion_cli.app import app, examples
from transfusion_cli.commands.options import (
    Provider,
    operating_point_option,
    provider_option,
    threshold_option,
)
from transfusion_cli.console import info
from transfusion_cli.deploy.serve import settings as defaults

SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart")


def check_serve_extra() -> None:
    """A one-line ConfigError naming the extra when FastAPI, uvicorn or python-multipart is
    missing."""
    from transfusion_cli.errors import ConfigError

    missing = [name for name in SERVE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"tfx serve needs {', '.join(missing)}: pip install "
                          "'transfusion-cli[serve]'")


@app.command("serve", epilog=examples(
    "tfx serve model.int8.onnx   # the page on http://127.0.0.1:8000/, the API under /v1/",
    "tfx serve model.onnx --host 0.0.0.0 --token \"$TFX_SERVE_TOKEN\"   # reachable by others"))
def serve_command(
    model: Path = typer.Argument(..., help="ONNX model written by `tfx export`."),
    host: str = typer.Option(defaults.DEFAULT_HOST, "--host",
                             help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(defaults.DEFAULT_PORT, "--port",
                             help="Port to listen on (0: any free port)."),
    token: str | None = typer.Option(None, "--token", envvar="TFX_SERVE_TOKEN",
                                     help="Bearer token API calls must send (at least 16 "
                                          "characters; or set TFX_SERVE_TOKEN)."),
    insecure_no_token: bool = typer.Option(False, "--insecure-no-token",
                                           help="Listen on a non-loopback address without a "
                                                "token: anyone who can reach it may use it."),
    max_concurrency: int = typer.Option(defaults.DEFAULT_MAX_CONCURRENCY, "--max-concurrency",
                                        min=1, help="Prediction requests admitted at once; "
                                                    "more get 503 with Retry-After."),
    max_images: int = typer.Option(defaults.MAX_IMAGES, "--max-images", min=1,
                                   help="Images one request may hold."),
    max_file_mb: int = typer.Option(defaults.MAX_FILE_MB, "--max-file-mb", min=1,
                                    help="Largest image file, in MB."),
    max_request_mb: int = typer.Option(defaults.MAX_REQUEST_MB, "--max-request-mb", min=1,
                                       help="Largest request body, in MB."),
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="Requests that run the model side by side "
                                            "[default: one per CPU]."),
    provider: Provider = provider_option(),
    threshold: float | None = threshold_option(),
    operating_point: str | None = operating_point_option(),
) -> None:
    """Serve a model: a page for clinicians (/) and an API for systems (/v1/, docs at /docs).

    Images are processed in memory, never written to disk and never logged.
    """
    check_serve_extra()
    from transfusion_cli.deploy.serve.runner import serve

    settings = defaults.ServeSettings(
        model=model, host=host, port=port, token=token or None,
        insecure_no_token=insecure_no_token, max_concurrency=max_concurrency,
        max_images=max_images, max_file_bytes=max_file_mb * defaults.MB,
        max_request_bytes=max_request_mb * defaults.MB, provider=provider.value, workers=workers,
        threshold=threshold, operating_point=operating_point)
    serve(settings.validate(), announce=info)
