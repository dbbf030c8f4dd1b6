"""Forward hooks on named blocks, conv maps as data points, and the streamed model comparison."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from transfusion_cli.errors import TfxError
from transfusion_cli.plugins import get
from transfusion_cli.registry import MetricSpec
from transfusion_cli.similarity import (
    SimilarityError,
    cca_coefficients,
    debiased_cka,
    linear_cka,
    pwcca,
    svcca,
)
from transfusion_cli.similarity.activations import (
    BlockCapture,
    PositionSampler,
    as_map,
    parse_spatial,
    plan_points,
    to_points,
)
from transfusion_cli.similarity.analysis import compare_representations


def tiny_cbr(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return get("architectures", "cbr-tiny").build(num_classes=5, in_chans=3).eval()


def images(n: int = 24, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def prepare(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 - 0.5


def test_capture_returns_each_block_output_and_removes_hooks():
    model = tiny_cbr(0)
    x = prepare(images(4))
    with torch.no_grad():
        expected = OrderedDict()
        h = x
        for name in ("block1", "block2", "block3", "block4"):
            h = getattr(model, name)(h)
            expected[name] = h
        with BlockCapture(model, list(expected) + ["head"]) as capture:
            outputs = capture.run(lambda: model(x))
    for name, value in expected.items():
        assert torch.equal(outputs[name], value)
    assert torch.equal(outputs["head"], model(x).detach())
    assert all(not m._forward_hooks for m in model.modules())


class Twice(nn.Module):
    """A block whose output module runs twice per forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.tfx_blocks = OrderedDict(stem=("conv",))

    def forward(self, x):
        return self.conv(self.conv(x))


def test_module_run_twice_and_unknown_layer_are_errors():
    model = Twice()
    with pytest.raises(TfxError, match="ran 2 times"), BlockCapture(model, ["stem"]) as capture:
        capture.run(lambda: model(torch.zeros(1, 3, 4, 4)))
    with pytest.raises(TfxError, match="valid layers: stem"):
        BlockCapture(model, ["block1"])


def test_to_points_channels_are_neurons_positions_are_points():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    points = to_points(fmap, (2, 2), None)
    assert points.shape == (8, 3)
    assert torch.equal(points[5], fmap[1, :, 0, 1])  # input 1, position (0, 1)
    pooled = to_points(fmap, (1, 1), None)
    assert torch.allclose(pooled, fmap.mean(dim=(2, 3)))
    index = torch.tensor([[3], [0]])
    assert torch.equal(to_points(fmap, (2, 2), index), torch.stack([fmap[0, :, 1, 1],
                                                                     fmap[1, :, 0, 0]]))
    assert as_map(torch.ones(5, 7)).shape == (5, 7, 1, 1)
    assert as_map(torch.ones(5, 9, 7)).shape == (5, 7, 9, 1)


def test_plan_keeps_points_within_budget_but_above_ten_times_the_neurons():
    a, b = torch.zeros(1, 32, 16, 16), torch.zeros(1, 64, 8, 8)
    plan = plan_points(a, b, inputs=100, spatial=None, max_points=1000)
    assert plan.grid == (8, 8)
    assert plan.per_input == 10 and plan.points == 1000  # budget 10/input, floor 640 points
    tight = plan_points(a, b, inputs=100, spatial=None, max_points=100)
    assert tight.per_input == 7 and tight.points >= 640  # the floor wins over the budget
    assert plan_points(a, b, 100, parse_spatial("2"), 10**6).grid == (2, 2)
    assert plan_points(a, b, 100, parse_spatial("auto"), 10**6).per_input == 64
    with pytest.raises(TfxError):
        parse_spatial("big")


def test_position_sampler_is_seeded():
    plan = plan_points(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), 10, None, 50)
    first = PositionSampler(plan, 3).indices(10, torch.device("cpu"))
    again = PositionSampler(plan, 3).indices(10, torch.device("cpu"))
    assert first.shape == (10, plan.per_input) and torch.equal(first, again)
    assert all(len(set(row.tolist())) == plan.per_input for row in first)


def _metrics(*names):
    return [get("metrics", name) for name in names]


def test_compare_representations_equals_metrics_on_the_full_point_matrices():
    a, b = tiny_cbr(0), tiny_cbr(1)
    data = images(40)
    batches = [data[i:i + 16] for i in range(0, 40, 16)]  # 16, 16, 8
    results = compare_representations(a, b, batches, prepare_a=prepare, prepare_b=prepare,
                                      pairs=[("block2", "block2"), ("block1", "block3")],
                                      metrics=_metrics("svcca", "pwcca", "cka", "cka_debiased",
                                      "cka_minibatch"),
                                      inputs=40, max_points=10**6)
    with torch.no_grad(), BlockCapture(a, ["block1", "block2"]) as ca, \
            BlockCapture(b, ["block2", "block3"]) as cb:
        out_a = ca.run(lambda: a(prepare(data)))
        out_b = cb.run(lambda: b(prepare(data)))
    same, cross = results
    x = to_points(out_a["block2"], (8, 8), None).double().numpy()
    y = to_points(out_b["block2"], (8, 8), None).double().numpy()
    assert same.plan.points == 40 * 64 and same.plan.neurons_a == 64
    assert same.metrics["svcca"].value == pytest.approx(svcca(x, y), abs=1e-10)
    assert same.metrics["pwcca"].value == pytest.approx(pwcca(x, y), abs=1e-10)
    assert same.metrics["cka"].value == pytest.approx(linear_cka(x, y), abs=1e-10)
    assert same.metrics["cka_debiased"].value == pytest.approx(debiased_cka(x, y), abs=1e-10)
    # block1 (16x16) is average-pooled to block3's 4x4 grid.
    assert cross.plan.grid == (4, 4) and cross.plan.neurons_b == 128
    xp = to_points(out_a["block1"], (4, 4), None).double().numpy()
    yp = to_points(out_b["block3"], (4, 4), None).double().numpy()
    assert cross.metrics["cka"].value == pytest.approx(linear_cka(xp, yp), abs=1e-10)
    assert cross.metrics["cka_minibatch"].details["batches"] == 3


def test_identical_models_are_fully_similar_with_subsampled_points():
    model = tiny_cbr(2)
    data = images(30)
    results = compare_representations(model, model, [data[:16], data[16:]], prepare_a=prepare,
                                      prepare_b=prepare, pairs=[(n, n) for n in ("block1", "head")],
                                      metrics=_metrics("cca", "svcca", "pwcca", "cka"), inputs=30,
                                      max_points=600, seed=5)
    block1 = results[0]
    assert block1.plan.per_input == 20 and block1.plan.points == 600
    for result in results:
        for name, metric in result.metrics.items():
            assert metric.value == pytest.approx(1.0, abs=1e-8), (result.layer_a, name)


def test_compare_representations_fails_early_when_cca_lacks_points():
    model = tiny_cbr(0)
    with pytest.raises(SimilarityError, match="--samples"):
        compare_representations(model, model, [images(8)], prepare_a=prepare, prepare_b=prepare,
                                pairs=[("block4", "block4")], metrics=_metrics("svcca"), inputs=8)


def test_plugin_metric_without_streaming_form_gets_the_point_matrices():
    seen = {}

    def first_coefficient(x, y):
        seen["shape"] = x.shape
        return float(cca_coefficients(x, y)[0])

    spec = MetricSpec("first_cca", first_coefficient)
    model = tiny_cbr(0)
    results = compare_representations(model, model, [images(20)], prepare_a=prepare,
                                      prepare_b=prepare, pairs=[("block2", "block2")],
                                      metrics=[spec], inputs=20, max_points=1000)
    assert seen["shape"] == (20 * 50, 64)
    assert results[0].metrics["first_cca"].value == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(results[0].metrics["first_cca"].value)
