"""The FastAPI application of `tfx serve`: the page, its assets, and the HTTP API."""

from __future__ import annotations

import base64
import hmac
from contextlib import contextmanager
from importlib import resources
from typing import Any

import anyio
import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from transfusion_cli.console import json_safe
from transfusion_cli.deploy.ort_session import cpu_threads
from transfusion_cli.deploy.predict import OnnxClassifier, json_record
from transfusion_cli.deploy.serve.middleware import ServeMiddleware, error_body
from transfusion_cli.deploy.serve.model_info import model_facts
from transfusion_cli.deploy.serve.settings import ServeSettings
from transfusion_cli.deploy.serve.uploads import FIELD, RequestBody, UploadError, read_uploads

# The page and its assets: files of this package, served from memory under fixed names (no
# path from a request ever reaches the file system).
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "docs.js": "text/javascript; charset=utf-8"}
PAGES = ("index.html", "docs.html")
RETRY_AFTER_S = 1
PNG_DATA_URL = "data:image/png;base64,"
# A refused upload is read to its end (and dropped) up to this many times the request limit,
# so that the client sees the refusal; a longer one is cut off.
DRAIN_LIMIT = 2
PREDICT_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FIELD],
        "properties": {FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": "One part per image (PNG, JPEG, BMP, TIFF, WebP, "
                                              "GIF, or DICOM for grayscale models); the type "
                                              "is read from the content, not the name."}}}}},
}


class ApiError(Exception):
    """A refused request: status, one-line reason, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def read_asset(name: str) -> bytes:
    """A file of the page, from the package's static folder."""
    return (resources.files(__package__) / "static" / name).read_bytes()


class Predictor:
    """The model, the workers that run it, and the count of admitted prediction requests."""

    def __init__(self, settings: ServeSettings, classifier: OnnxClassifier | None = None):
        self.settings = settings
        self.workers = settings.workers or cpu_threads()
        # Each request runs single-threaded (on CPU) so that ``workers`` requests run side by
        # side instead of fighting over onnxruntime's thread pool.
        threads = max(1, cpu_threads() // self.workers)
        self.classifier = classifier or OnnxClassifier(
            settings.model, settings.provider, threads, threshold=settings.threshold,
            operating_point=settings.operating_point)
        meta = self.classifier.metadata
        # One run before the first request: the server is ready when it answers fast.
        self.classifier.logits(np.zeros((1, meta.image_size, meta.image_size, meta.channels),
                                        np.uint8))
        self.in_flight = 0
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def saturated(self) -> bool:
        """Whether a new prediction request would be refused (503)."""
        return self.in_flight >= self.settings.max_concurrency

    @contextmanager
    def admitted(self):
        """Hold one of ``max_concurrency`` slots, or refuse with 503 and Retry-After."""
        if self.saturated:
            raise ApiError(503, f"busy: {self.in_flight} requests in progress; retry after "
                           f"{RETRY_AFTER_S} s.", {"Retry-After": str(RETRY_AFTER_S)})
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def predict(self, uploads: list[tuple[str, bytes]], heatmaps: bool = False
                      ) -> list[dict[str, Any]]:
        """What `tfx predict --json` prints, one record per upload, in order; ``heatmaps``:
        each record's ``heatmap`` also holds its overlay (``png``, a data: URL)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        return await anyio.to_thread.run_sync(self._records, uploads, heatmaps,
                                              limiter=self._limiter)

    def _records(self, uploads: list[tuple[str, bytes]], heatmaps: bool) -> list[dict[str, Any]]:
        classifier = self.classifier
        results = classifier.predict_bytes(uploads, batch_size=len(uploads), heatmaps=heatmaps)
        records = [json_record(r, classifier.provider) for r in results]
        drawn = [i for i, r in enumerate(results) if r.heatmap is not None]
        scale = classifier.heatmap_scale([results[i] for i in drawn]) if drawn else None
        for i in drawn:  # drawn on one scale across the request, as predict --heatmaps does
            name, content = uploads[i]
            png = classifier.overlay_png(results[i], classifier.prepare_bytes(content, name),
                                         scale)
            records[i]["heatmap"]["png"] = PNG_DATA_URL + base64.b64encode(png).decode()
        return records


def create_app(settings: ServeSettings, classifier: OnnxClassifier | None = None) -> FastAPI:
    """The `tfx serve` application for ``settings`` (validated here); ``classifier`` reuses a
    loaded model."""
    settings.validate()
    predictor = Predictor(settings, classifier)
    facts = model_facts(predictor.classifier, settings)
    app = FastAPI(title="tfx serve", version=facts["tfx_version"], docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json",
                  description=f"Predictions of {facts['model']} ({facts['task']}: "
                              f"{', '.join(facts['classes'])}).")
    app.state.predictor = predictor
    pages = {name: read_asset(name) for name in PAGES}
    assets = {name: read_asset(name) for name in ASSETS}
    bearer = HTTPBearer(auto_error=False, description="The server's --token.")

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, settings.token.encode()):
            raise ApiError(401, "missing or wrong access token: send 'Authorization: Bearer "
                           "TOKEN' with the server's --token.", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), request.state.request_id), exc.status,
                            headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), request.state.request_id),
                            exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid')}",
                                       request.state.request_id), 422)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(pages["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return Response(pages["docs.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(404, "no such file.")
        return Response(assets[name], media_type=ASSETS[name])

    @app.get("/healthz", summary="Liveness: the process answers.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded and a request would be admitted.",
             responses={503: {"description": "Saturated: every slot is in use."}})
    def readyz() -> JSONResponse:
        ready = not predictor.saturated
        return JSONResponse({"ready": ready, "in_flight": predictor.in_flight,
                             "max_concurrency": settings.max_concurrency},
                            200 if ready else 503)

    @app.get("/v1/model", summary="The model card's facts, its decision rule and the limits.",
             dependencies=[Depends(authorized)])
    def model() -> JSONResponse:
        return JSONResponse(json_safe(facts))

    @app.post("/v1/predict", dependencies=[Depends(authorized)],
              summary="Predict one or several images (multipart/form-data, parts named 'files').",
              description="Answers `{request_id, model, results}`; each result is what `tfx "
                          "predict --json` prints for that image (an unusable image gets an "
                          "`error` instead). Images are held in memory only and never logged.",
              openapi_extra={"requestBody": PREDICT_BODY},
              responses={400: {"description": "Malformed body, no images or too many."},
                         401: {"description": "Missing or wrong bearer token."},
                         413: {"description": "A file or the request is too large."},
                         415: {"description": "Not multipart/form-data."},
                         503: {"description": "Saturated; retry after Retry-After seconds."}})
    async def predict(request: Request, heatmaps: bool = Query(
            False, description="Also draw each image's heatmap overlay (PNG as a data: URL in "
                               "`heatmap.png`); needs a model exported with a heatmap output "
                               "(`heatmaps` in GET /v1/model).")) -> JSONResponse:
        if heatmaps and not predictor.classifier.has_heatmaps:
            raise ApiError(400, f"{facts['model']} has no heatmap output (GET /v1/model: "
                           "heatmaps false); ask without heatmaps=true, or re-export the model "
                           "with a tfx that adds one.")
        with predictor.admitted():
            body = RequestBody(request.receive)
            try:
                with anyio.fail_after(settings.body_timeout_s):
                    uploads = await read_uploads(
                        body.chunks(), request.headers.get("content-type"),
                        request.headers.get("content-length"), settings.max_images,
                        settings.max_file_bytes, settings.max_request_bytes)
            except UploadError as exc:
                if request.headers.get("expect", "").lower() != "100-continue":
                    # A client that sends its whole body before reading the answer (urllib,
                    # requests, a browser) gets the refusal instead of a reset connection.
                    with anyio.move_on_after(settings.body_timeout_s):
                        await body.drain(DRAIN_LIMIT * settings.max_request_bytes)
                raise ApiError(exc.status, str(exc)) from None
            except TimeoutError:
                raise ApiError(408, f"the request body took longer than "
                               f"{settings.body_timeout_s:.0f} s to arrive.") from None
            pairs = [(upload.name, bytes(upload.content)) for upload in uploads]
            del uploads
            results = await predictor.predict(pairs, heatmaps)
        return JSONResponse(json_safe({"request_id": request.state.request_id,
                                       "model": facts["model"], "results": results}))

    routes = {route.path for route in app.routes if "{" not in route.path}
    app.add_middleware(ServeMiddleware, routes=routes)
    return app
