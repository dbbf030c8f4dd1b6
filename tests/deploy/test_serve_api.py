"""`tfx serve`'s HTTP API against a live uvicorn on a free port: what it answers, what it
refuses (hostile uploads, tokens, saturation), the headers on every response, and that no
patient data reaches a log line or the disk."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import live_server, settings_for

from transfusion_cli.deploy.predict import OnnxClassifier, json_record
from transfusion_cli.deploy.serve import app as serve_app
from transfusion_cli.deploy.serve.client import encode_multipart, post_images, request
from transfusion_cli.deploy.serve.settings import ServeSettings
from transfusion_cli.errors import ConfigError

TOKEN = "correct-horse-battery-staple-42"
HOSTILE_NAMES = ("<img src=x onerror=alert(1)>.png", "../../etc/passwd.png",
                 "C:\\Users\\jane doe\\fundus.png", "name\x1b[31mred\x07.png")


@pytest.fixture(scope="module")
def server(synthetic_model):
    """A server with small limits (so that the hostile cases are cheap to send)."""
    settings = settings_for(synthetic_model.model, max_images=3, max_file_bytes=2_000_000,
                            max_request_bytes=3_000_000, max_concurrency=8)
    with live_server(settings) as url:
        yield url


@contextmanager
def server_log():
    """Every line the server logs (access and error loggers) in the block. Enter it after the
    server started: starting one reconfigures logging and drops handlers added before."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    loggers = [logging.getLogger(name) for name in ("tfx.serve.access", "tfx.serve.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield lines
    finally:
        time.sleep(0.2)  # the access line is written just after the response
        for logger in loggers:
            logger.removeHandler(handler)


def png_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def big_png(side: int) -> bytes:
    """A noise PNG (incompressible, so its size grows with ``side``)."""
    rng = np.random.default_rng(side)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_predict_answers_what_predict_json_prints(server, synthetic_model):
    images = synthetic_model.images
    status, headers, body = post_images(server, [(p.name, png_bytes(p)) for p in images])
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    classifier = OnnxClassifier(synthetic_model.model, "cpu")
    expected = [json_record(r, classifier.provider) for r in classifier.predict_files(images)]
    assert len(body["results"]) == len(images) == 2
    for got, want, path in zip(body["results"], expected, images, strict=True):
        assert got["image"] == path.name and want["image"] == str(path)
        assert set(got) == set(want)
        np.testing.assert_allclose(list(got["probabilities"].values()),
                                   list(want["probabilities"].values()), rtol=1e-6)
        assert got["predicted"] == want["predicted"]
        assert got["referable"] == want["referable"]
        assert any("synthetic" in w for w in got["warnings"])
    assert re.fullmatch(r"[0-9a-f]{16}", body["request_id"])
    assert body["request_id"] == headers["x-request-id"]


def test_concurrent_requests_each_get_their_own_images_result(server, synthetic_model):
    """Eight clients at once: every answer belongs to the image that client sent."""
    uploads = [(f"image-{i}.png", big_png(32 + 4 * i)) for i in range(8)]
    classifier = OnnxClassifier(synthetic_model.model, "cpu")
    expected = {name: r.probabilities for (name, _), r in
                zip(uploads, classifier.predict_bytes(uploads), strict=True)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda upload: post_images(server, [upload]), uploads))
    for (name, _), (status, _, body) in zip(uploads, answers, strict=True):
        assert status == 200, body
        [result] = body["results"]
        assert result["image"] == name
        np.testing.assert_allclose(list(result["probabilities"].values()),
                                   list(expected[name].values()), rtol=1e-6)


def test_every_response_is_no_store_with_a_strict_policy_and_no_cors(server):
    answers = [request(server + path, headers={"Origin": "http://evil.example"})
               for path in ("/", "/docs", "/static/app.js", "/static/app.css", "/healthz",
                            "/readyz", "/v1/model", "/openapi.json", "/static/../app.py",
                            "/no-such-page")]
    answers.append(request(server + "/v1/predict", "POST", b"x",
                           {"Content-Type": "text/plain", "Origin": "http://evil.example"}))
    answers.append(request(server + "/v1/predict", "OPTIONS", None,
                           {"Origin": "http://evil.example",
                            "Access-Control-Request-Method": "POST"}))
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * 8 + [404, 404, 415, 405]
    assert [body["error"] for _, _, body in answers[-4:]] == [
        "Not Found", "Not Found", answers[-2][2]["error"], "Method Not Allowed"]
    for _, headers, _ in answers:
        assert headers["cache-control"] == "no-store"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert re.fullmatch(r"[0-9a-f]{16}", headers["x-request-id"])
        assert not any(name.startswith("access-control-") for name in headers)
        assert "server" not in headers


def test_page_and_assets_are_self_contained_and_insert_text_only(server):
    _, _, page = request(server + "/")
    html = page.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip()
                           for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert re.search(r'<label for="files"', html) and 'id="files"' in html
    for name in ("app.js", "app.css", "docs.js"):
        status, _, asset = request(server + "/static/" + name)
        assert status == 200
        text = asset.decode()
        assert not re.search(r"https?://", text), f"{name} loads something from elsewhere"
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(",
                             text), f"{name} inserts HTML"
    assert not re.search(r'(src|href)="https?://', html)


def test_model_endpoint_has_the_card_facts(server, synthetic_model):
    status, _, facts = request(server + "/v1/model")
    assert status == 200
    assert facts["synthetic"] is True and facts["dataset"] == "synthetic-retina"
    assert facts["metrics"]["split"] == "test" and facts["metrics"]["source"] == "tfx evaluate"
    auc = facts["metrics"]["values"]["referable_auc"]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert any("not for diagnosis" in line for line in facts["intended_use"])
    # Decisions as predict makes them: the model's rule, each threshold with its source.
    rule = OnnxClassifier(synthetic_model.model, "cpu").rule.to_dict()
    assert facts["decision"] == rule and set(rule["thresholds"]) == {"referable (grade >= 2)"}
    assert all(t["source"] for t in rule["thresholds"].values())
    assert facts["accepts"]["max_images"] == 3 and facts["accepts"]["dicom"] is False
    assert facts["referable"]["from_class_index"] == 2 and facts["heatmaps"] is True


def test_heatmaps_come_as_png_overlays_on_request(server, synthetic_model):
    images = synthetic_model.images
    uploads = [(p.name, png_bytes(p)) for p in images]
    status, _, plain = post_images(server, uploads)
    assert status == 200 and all("heatmap" not in r for r in plain["results"])
    status, _, body = request(server + "/v1/predict?heatmaps=true", "POST",
                              *multipart_args(uploads))
    assert status == 200
    classifier = OnnxClassifier(synthetic_model.model, "cpu")
    expected = classifier.predict_files(images, heatmaps=True)
    for record, want in zip(body["results"], expected, strict=True):
        heatmap = record["heatmap"]
        assert heatmap["target"] == want.heatmap_target and heatmap["file"] is None
        assert heatmap["score"] == pytest.approx(want.heatmap_score, rel=1e-5)
        assert heatmap["png"].startswith("data:image/png;base64,")
        drawn = Image.open(io.BytesIO(base64.b64decode(heatmap["png"].split(",", 1)[1])))
        assert drawn.format == "PNG" and drawn.width > 200
        assert record["probabilities"] == pytest.approx(want.probabilities, rel=1e-6)


def multipart_args(uploads):
    """(body, headers) for ``request`` of a multipart upload."""
    payload, kind = encode_multipart(uploads)
    return payload, {"Content-Type": kind}


def test_threshold_override_is_used_and_named(synthetic_model):
    settings = settings_for(synthetic_model.model, threshold=0.01)
    with live_server(settings) as url:
        status, _, body = post_images(url, [(p.name, png_bytes(p))
                                            for p in synthetic_model.images])
        _, _, facts = request(url + "/v1/model")
    assert status == 200
    for record in body["results"]:
        assert record["threshold"] == 0.01 and record["referable"] is True
        assert "--threshold 0.01" in record["threshold_source"]
        assert "not validated" in record["threshold_source"]
    assert facts["decision"]["thresholds"]["referable (grade >= 2)"]["threshold"] == 0.01


def test_health_readiness_and_openapi(server):
    assert request(server + "/healthz")[2] == {"status": "ok"}
    status, _, ready = request(server + "/readyz")
    assert status == 200 and ready == {"ready": True, "in_flight": 0, "max_concurrency": 8}
    status, _, spec = request(server + "/openapi.json")
    predict = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"400", "401", "413", "415", "503"} <= set(predict["responses"])
    assert {"/healthz", "/readyz", "/v1/model"} <= set(spec["paths"])
    _, _, docs = request(server + "/docs")
    assert b'src="/static/docs.js"' in docs and b"cdn" not in docs.lower()


def test_oversized_uploads_are_refused(server):
    big = big_png(900)  # ~2.4 MB, over the 2 MB file limit
    assert 2_000_000 < len(big) < 3_000_000
    status, _, body = post_images(server, [("big.png", big)])
    assert status == 413 and "larger than the 1.91 MB a file may be" in body["error"]
    # Declared too large: refused from the header, before the body is read ...
    status, _, body = post_images(server, [("a.png", big), ("b.png", big)])
    assert status == 413 and "request body larger than" in body["error"]
    # ... and never sent at all by a client that waits for "100 Continue" (as curl does).
    payload, kind = encode_multipart([("a.png", big), ("b.png", big)])
    status, _, body = raw_post(server, payload, kind, expect_continue=True)
    assert status == 413 and "request body larger than" in body["error"]
    # Streamed without a Content-Length (chunked): counted as it arrives.
    payload, kind = encode_multipart([("a.png", big[:1_500_000]), ("b.png", big[:1_500_000])])
    status, _, body = raw_post(server, payload, kind, chunked=True)
    assert status == 413 and "request body larger than" in body["error"]


def raw_post(url: str, payload: bytes, content_type: str, chunked: bool = False,
             expect_continue: bool = False):
    """POST with http.client, optionally chunked (no Content-Length), or sending only the
    headers with ``Expect: 100-continue`` and reading the answer before any body."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        if expect_continue:
            connection.putrequest("POST", "/v1/predict")
            for name, value in (("Content-Type", content_type), ("Expect", "100-continue"),
                                ("Content-Length", str(len(payload)))):
                connection.putheader(name, value)
            connection.endheaders()
        elif chunked:
            pieces = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
            connection.request("POST", "/v1/predict", body=pieces,
                               headers={"Content-Type": content_type}, encode_chunked=True)
        else:
            connection.request("POST", "/v1/predict", body=payload,
                               headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_type_comes_from_the_content_not_the_name(server, synthetic_model):
    good = png_bytes(synthetic_model.images[0])
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    uploads = [("notes.png", b"just some text, not an image\n"), ("drawing.png", eps),
               ("photo.txt", good)]
    status, _, body = post_images(server, uploads)
    assert status == 200
    text, postscript, photo = body["results"]
    for failed in (text, postscript):
        assert set(failed) == {"image", "error"}
        assert "content is not PNG, JPEG" in failed["error"]
    assert photo["image"] == "photo.txt" and "predicted" in photo  # a PNG whatever its name


def test_too_many_files_and_malformed_requests_are_refused(server, synthetic_model):
    good = png_bytes(synthetic_model.images[0])
    status, _, body = post_images(server, [(f"{i}.png", good) for i in range(4)])
    assert status == 400 and "more than 3 images" in body["error"]
    status, _, body = request(server + "/v1/predict", "POST", b"{}",
                              {"Content-Type": "application/json"})
    assert status == 415 and "multipart/form-data" in body["error"]
    payload, kind = encode_multipart([("a.png", good)], field="attachment")
    status, _, body = request(server + "/v1/predict", "POST", payload, {"Content-Type": kind})
    assert status == 400 and "named 'files'" in body["error"]
    status, _, body = request(server + "/v1/predict", "POST", b"",
                              {"Content-Type": "multipart/form-data; boundary=xyz"})
    assert status == 400 and "no images" in body["error"]
    status, _, body = request(server + "/v1/predict", "POST", b"garbage\r\n--zz",
                              {"Content-Type": "multipart/form-data; boundary=xyz"})
    assert status == 400
    status, _, body = request(server + "/v1/predict?heatmaps=maybe", "POST",
                              *multipart_args([("a.png", good)]))
    assert status == 422 and body["error"].startswith("query.heatmaps: ")
    assert body["request_id"]


def test_hostile_file_names_are_data_and_never_logged(server, synthetic_model):
    good = png_bytes(synthetic_model.images[0])
    with server_log() as access_log:
        status, headers, body = post_images(server, [(n, good) for n in HOSTILE_NAMES[:3]])
        status_bad, _, body_bad = post_images(server, [(HOSTILE_NAMES[3], b"not an image")])
        request(server + "/patient-jane-doe/scan.png")
    assert status == 200 and headers["content-type"] == "application/json"
    names = [r["image"] for r in body["results"]]
    assert names == ["<img src=x onerror=alert(1)>.png", "passwd.png", "fundus.png"]
    [failed] = body_bad["results"]
    assert status_bad == 200 and failed["image"] == "name[31mred.png"  # controls dropped
    assert "\x1b" not in failed["error"]
    log = "\n".join(access_log)
    assert len(access_log) >= 3
    for secret in ("onerror", "passwd", "jane", "fundus", "red.png", "not an image", ".png"):
        assert secret not in log.lower()
    for line in access_log:
        assert re.fullmatch(r"request_id=[0-9a-f]{16} method=\w+ route=(/[\w/.]*|-) "
                            r"status=\d+ in_bytes=\d+ out_bytes=\d+ latency_ms=[\d.]+", line)
    assert "route=- status=404" in log


def test_uploads_never_touch_the_disk(server, synthetic_model):
    """Python's audit hook sees every file opened for writing while a 1.5 MB upload (over
    Starlette's 1 MB spooling threshold) is received and predicted."""
    written: list[str] = []
    recording = threading.Event()

    def audit(event, args):
        if recording.is_set() and event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writes = (mode and any(c in str(mode) for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writes:
                written.append(str(path))

    sys.addaudithook(audit)  # cannot be removed; inert once recording stops
    upload = big_png(700)
    assert len(upload) > 1_100_000
    recording.set()
    try:
        status, _, body = post_images(server, [("large.png", upload)])
    finally:
        recording.clear()
    assert status == 200 and "predicted" in body["results"][0], body
    assert written == []


def test_token_is_required_when_set(synthetic_model):
    settings = settings_for(synthetic_model.model, token=TOKEN)
    good = png_bytes(synthetic_model.images[0])
    with live_server(settings) as url:
        for token in (None, "wrong-token-of-enough-length", TOKEN + "x", TOKEN[:-1]):
            status, headers, body = post_images(url, [("a.png", good)], token=token)
            assert status == 401 and headers["www-authenticate"] == "Bearer"
            assert "access token" in body["error"]
        assert request(url + "/v1/model")[0] == 401
        assert request(url + "/v1/model", headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        status, _, body = post_images(url, [("a.png", good)], token=TOKEN)
        assert status == 200 and "predicted" in body["results"][0]
        assert request(url + "/v1/model", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # The page, its assets and the probes hold no data: they load without the token.
        assert [request(url + p)[0] for p in ("/", "/static/app.js", "/healthz")] == [200] * 3


def test_exposed_addresses_need_a_token():
    model = Path("model.onnx")
    with pytest.raises(ConfigError, match="--token"):
        ServeSettings(model=model, host="0.0.0.0").validate()
    with pytest.raises(ConfigError, match="--token"):
        ServeSettings(model=model, host="192.168.1.20").validate()
    with pytest.raises(ConfigError, match="at least 16"):
        ServeSettings(model=model, host="0.0.0.0", token="short").validate()
    ServeSettings(model=model, host="0.0.0.0", token=TOKEN).validate()
    ServeSettings(model=model, host="0.0.0.0", insecure_no_token=True).validate()
    for loopback in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"):
        ServeSettings(model=model, host=loopback).validate()


def test_saturated_server_answers_503_with_retry_after(synthetic_model):
    settings = settings_for(synthetic_model.model, max_concurrency=1)
    good = png_bytes(synthetic_model.images[0])
    with live_server(settings) as url:
        # A client that starts an upload and stalls holds the only slot.
        payload, kind = encode_multipart([("slow.png", good)])
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        try:
            slow.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload[:100])
            deadline = time.monotonic() + 10
            while request(url + "/readyz")[0] != 503:
                assert time.monotonic() < deadline, "the stalled upload was never admitted"
                time.sleep(0.05)
            status, headers, body = post_images(url, [("a.png", good)])
            assert status == 503 and headers["retry-after"] == "1"
            assert "busy" in body["error"]
            slow.sendall(payload[100:])  # the stalled client finishes: answered normally
            assert b"200 OK" in slow.recv(65536)
        finally:
            slow.close()
        assert post_images(url, [("a.png", good)])[0] == 200


def test_a_stalled_upload_is_cut_off(synthetic_model):
    payload, kind = encode_multipart([("slow.png", png_bytes(synthetic_model.images[0]))])
    with live_server(settings_for(synthetic_model.model, body_timeout_s=0.5)) as url:
        stalled = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        try:
            stalled.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}"
                            f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                            + payload[:100])
            stalled.settimeout(10)
            answer = b""
            while b"took longer" not in answer and (piece := stalled.recv(65536)):
                answer += piece
        finally:
            stalled.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"took longer than" in answer
        assert request(url + "/readyz")[2]["in_flight"] == 0  # the slot is free again


def test_internal_errors_name_only_the_request(synthetic_model, monkeypatch):
    def broken(self, uploads, heatmaps=False):
        raise RuntimeError(f"secret detail {uploads[0][0]}")

    with live_server(settings_for(synthetic_model.model)) as url, server_log() as access_log:
        monkeypatch.setattr(serve_app.Predictor, "predict", broken)
        status, headers, body = post_images(url, [("jane-doe.png", b"x")])
    assert status == 500 and body["request_id"] == headers["x-request-id"]
    assert "secret" not in body["error"] and "jane" not in body["error"]
    log = "\n".join(access_log)
    assert "RuntimeError" in log and "secret" not in log and "jane" not in log


SERVE_WITHOUT_TORCH = """
import sys, threading, time
from transfusion_cli.cli import main  # every command module, as `tfx` loads them
from transfusion_cli.deploy.serve.app import create_app
from transfusion_cli.deploy.serve.client import post_images
from transfusion_cli.deploy.serve.runner import bind, make_server
from transfusion_cli.deploy.serve.settings import ServeSettings
from pathlib import Path
sock = bind("127.0.0.1", 0)
server = make_server(create_app(ServeSettings(model=Path(sys.argv[1]))), sock)
threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
while not server.started:
    time.sleep(0.02)
status, _, body = post_images(f"http://127.0.0.1:{sock.getsockname()[1]}",
                              [("a.png", Path(sys.argv[2]).read_bytes())])
server.should_exit = True
print(status, "predicted" in body["results"][0])
print("TORCH_IMPORTED=" + str("torch" in sys.modules))
"""


def test_serve_never_imports_torch(synthetic_model):
    run = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, str(synthetic_model.model),
                          str(synthetic_model.images[0])], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert lines[-2:] == ["200 True", "TORCH_IMPORTED=False"]


MISSING_EXTRA = """
import sys
sys.modules["fastapi"] = None  # as if the serve extra were not installed
from transfusion_cli.cli import main
main(["serve", sys.argv[1]])
"""


def test_missing_extra_is_one_line_naming_it(synthetic_model):
    run = subprocess.run([sys.executable, "-c", MISSING_EXTRA, str(synthetic_model.model)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == ("Error: tfx serve needs fastapi: pip install "
                                  "'transfusion-cli[serve]'")


def test_cli_refuses_an_exposed_address_without_a_token(tfx, synthetic_model):
    result = tfx("serve", synthetic_model.model, "--host", "0.0.0.0")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --host 0.0.0.0 lets other machines")


@pytest.fixture(scope="module")
def chest_model(tmp_path_factory) -> Path:
    """A grayscale multi-label (chest X-ray type) model: the kind DICOM uploads are for."""
    from export_helpers import FakeDatasets, chest_info, make_ckpt
    from registry_helpers import registry_with

    from transfusion_cli.deploy.export import ExportSettings, export_checkpoint

    root = tmp_path_factory.mktemp("serve-chest")
    with registry_with(FakeDatasets()):
        ckpt = make_ckpt(root / "chest.pt", "cbr-tiny", chest_info(32), seed=1)
        export_checkpoint(ExportSettings(checkpoint=ckpt, out=root / "chest.onnx",
                                         latency_runs=1))
    return root / "chest.onnx"


def test_dicom_is_read_by_content_for_grayscale_models(chest_model, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from datasets_fixtures import write_dicom

    ramp = np.tile(np.linspace(0, 4000, 48), (40, 1))
    scan = write_dicom(tmp_path / "scan.dcm", ramp)
    dataset = pydicom.dcmread(scan)
    dataset.Rows = dataset.Columns = 40000  # declares 1600 million pixels, holds 40 x 48
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    classifier = OnnxClassifier(chest_model, "cpu")
    expected = json_record(classifier.predict_files([scan])[0], classifier.provider)
    with live_server(settings_for(chest_model)) as url:
        assert request(url + "/v1/model")[2]["accepts"]["dicom"] is True
        status, _, body = post_images(url, [("scan.bin", scan.read_bytes()),
                                            ("huge.dcm", buffer.getvalue())])
    assert status == 200
    got, refused = body["results"]
    assert got["image"] == "scan.bin"
    assert got["probabilities"] == pytest.approx(expected["probabilities"], rel=1e-6)
    assert got["predicted"] == expected["predicted"]
    assert set(refused) == {"image", "error"} and "million pixels" in refused["error"]
