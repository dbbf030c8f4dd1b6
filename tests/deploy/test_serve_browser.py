"""The `tfx serve` page in a real browser: headless Chromium (the distribution's `chromium`)
driven by playwright from the keyboard: choose photos, predict, read the result, the heatmap
slot, the warnings and the synthetic-data banner; a hostile file name stays text. Saves a
screenshot (and copies it to $TFX_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import live_server, settings_for

from transfusion_cli.deploy.serve.client import request

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOSTILE_NAME = "<img src=x onerror=window.pwned=1>.png"


def find_browser() -> str | None:
    """A Chromium executable: $TFX_CHROMIUM, else the first of ``BROWSERS`` on PATH."""
    explicit = os.environ.get("TFX_CHROMIUM")
    if explicit and Path(explicit).is_file():
        return explicit
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system (playwright cannot download its own offline)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed: pip install playwright "
                                          "(in the dev extra)")
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium found (looked for $TFX_CHROMIUM and "
                    f"{', '.join(BROWSERS)} on PATH): apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def test_page_shows_a_prediction_warnings_heatmap_slot_and_banner(browser, tmp_path,
                                                                  synthetic_model):
    photo = synthetic_model.images[0]
    with live_server(settings_for(synthetic_model.model)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: problems.append("dialog: " + dialog.message))
        external = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(
            (url, "blob:", "data:")) else None)
        page.goto(url + "/")

        banner = page.locator("#synthetic-banner")
        banner.wait_for(state="visible")
        assert "Synthetic-data model" in banner.inner_text()
        assert page.locator("#model-name").inner_text() == "model.onnx"
        card = page.locator("#model-card")
        assert "Test metrics" in card.inner_text() and "95% CI" in card.inner_text()
        assert "not for diagnosis" in card.inner_text()

        # Keyboard only: the labelled file input takes focus; two files are chosen (one with
        # markup in its name); Tab reaches Predict and Enter submits. Whether Space opens the
        # system's file dialog is the browser's behaviour (it differs between headless
        # builds), so the files are set on the focused input directly.
        files = page.get_by_label("Choose one or several images")
        files.focus()
        assert page.evaluate("document.activeElement.type") == "file"
        assert files.is_enabled() and files.get_attribute("multiple") is not None
        files.set_input_files([
            {"name": name, "mimeType": "image/png", "buffer": photo.read_bytes()}
            for name in (photo.name, HOSTILE_NAME)])
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "submit"
        page.keyboard.press("Enter")

        results = page.get_by_test_id("result")
        results.nth(1).wait_for()
        assert results.count() == 2
        assert page.locator("#status").inner_text().startswith("2 result(s)")
        first = results.nth(0)
        assert first.locator(".result-name").inner_text() == photo.name
        prediction = first.get_by_test_id("prediction").inner_text()
        assert prediction in {"0-none", "1-mild", "2-moderate", "3-severe", "4-proliferative"}
        # The decision names its threshold and where it comes from (the validated operating
        # point when export stored one).
        chosen = request(url + "/v1/model")[2]["decision"]["thresholds"]
        cut = chosen["referable (grade >= 2)"]
        referable = first.locator(".referable").inner_text()
        assert f"threshold {cut['threshold']:.3f}" in referable
        assert f"Threshold source: {cut['source']}" in referable
        assert "synthetic" in first.locator(".warnings").inner_text()
        # The model has a class-activation output: the overlay is shown and has decoded.
        slot = first.get_by_test_id("heatmap-slot")
        assert slot.is_visible() and slot.get_attribute("data-state") == "present"
        assert slot.locator("img").evaluate("img => img.complete && img.naturalWidth > 200")

        hostile = results.nth(1)
        assert hostile.locator(".result-name").inner_text() == HOSTILE_NAME
        assert page.locator("img[src='x']").count() == 0
        assert page.evaluate("window.pwned") is None

        shot = tmp_path / "tfx-serve-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("TFX_SCREENSHOT_DIR"):
            target = Path(os.environ["TFX_SCREENSHOT_DIR"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target / shot.name)
        page.close()
    assert problems == [], problems  # no script error, no CSP violation, no dialog
    assert external == [], external  # nothing fetched from anywhere else


def test_page_asks_for_the_token_and_uses_it(browser, synthetic_model):
    token = "a-long-enough-test-token-123"
    with live_server(settings_for(synthetic_model.model, token=token)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        field = page.get_by_label("Access token")
        field.wait_for(state="visible")
        field.fill(token)
        page.keyboard.press("Enter")
        page.locator("#synthetic-banner").wait_for(state="visible")
        assert page.locator("#token-box").is_hidden()
        page.close()
