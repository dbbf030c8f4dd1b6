"""`compare-inits --report DIR --metric M` checks M as planning does, and never rewrites a
good report with one that lost finished cells (issue 20 item 2)."""

from __future__ import annotations

import json

import fit_helpers
import pytest
from fit_helpers import one_thread
from registry_helpers import registry_with
from safety_helpers import assert_refused

TINY = ["--data", "fake-retina", "--arch", "cbr-tiny", "--inits", "random", "--seeds", "1",
        "--steps", "2", "--image-size", "16", "--batch-size", "8", "--option", "n_train=32",
        "--option", "n_val=16"]


@pytest.fixture
def sweep(tfx, tmp_path):
    """A finished one-cell sweep with its report."""
    with registry_with(fit_helpers), one_thread():
        out = tmp_path / "sweep"
        result = tfx("compare-inits", *TINY, "--out", out)
        assert result.exit_code == 0, result.stderr
        assert "1 of 1 cells finished" in result.stderr
        yield out


def test_a_metric_the_dataset_does_not_report_is_refused(sweep):
    assert_refused(sweep.parent, "compare-inits", "--report", sweep, "--metric", "auc/typo",
                   says="--metric 'auc/typo' is not a metric of dataset 'fake-retina'")


def test_a_report_that_would_lose_finished_cells_is_refused(tfx, sweep):
    """A metric the dataset has but the finished cells did not record (here: deleted from
    their metrics.jsonl): the old report stays."""
    metrics = next(sweep.glob("runs/*/metrics.jsonl"))
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "kappa"}) + "\n"
                               for r in records))
    assert_refused(sweep.parent, "compare-inits", "--report", sweep, "--metric", "kappa",
                   says=f"1 finished cell of {sweep} (cbr-tiny__random__nall__s0) recorded no "
                        "'kappa'; the report was left as it was")
    result = tfx("compare-inits", "--report", sweep, "--metric", "auc")
    assert result.exit_code == 0 and "1 of 1 cells finished" in result.stderr
