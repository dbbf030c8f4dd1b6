"""`tfx explain`: the Grad-CAM peak lies on a lesion the model learned to detect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from transfusion_cli.data.bundles import DatasetInfo, normalize
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.plugins import get

pytest.importorskip("pytorch_grad_cam")

SIZE = 64
RADIUS = 6


def blob_image(rng: np.random.Generator, center: tuple[int, int] | None) -> np.ndarray:
    """A dim noisy field; with ``center``, a bright lesion (disk) drawn there."""
    image = rng.normal(70, 12, (SIZE, SIZE, 3)).clip(0, 255)
    if center is not None:
        rows, cols = np.ogrid[:SIZE, :SIZE]
        disk = (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= RADIUS ** 2
        image[disk] = [235, 225, 120]
    return image.astype(np.uint8)


def random_center(rng: np.random.Generator) -> tuple[int, int]:
    return tuple(int(v) for v in rng.integers(RADIUS + 2, SIZE - RADIUS - 2, 2))


@pytest.fixture(scope="module")
def lesion_checkpoint(tmp_path_factory):
    """cbr-tiny trained for a few dozen steps: class 1 ('lesion', referable) iff a blob."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    info = DatasetInfo(name="blob-lesions", task="multiclass", class_names=("clear", "lesion"),
                       channels=3, image_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25,) * 3,
                       referable_threshold=1, selection_metric="referable_auc")
    model = get("architectures", "cbr-tiny").build(num_classes=2, in_chans=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(40):
        labels = rng.integers(0, 2, 32)
        batch = np.stack([blob_image(rng, random_center(rng) if y else None) for y in labels])
        x = normalize(torch.from_numpy(batch).permute(0, 3, 1, 2), info)
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    path = tmp_path_factory.mktemp("explain") / "lesion.pt"
    save_checkpoint(make_checkpoint(model, "cbr-tiny", info), path)
    return path


def test_gradcam_peak_lies_on_the_drawn_lesion(lesion_checkpoint, tmp_path):
    from transfusion_cli.evaluation.explain import explain_images

    rng = np.random.default_rng(123)
    centers = [(14, 15), (48, 20), (30, 50)]
    paths = []
    for index, center in enumerate(centers):
        path = tmp_path / f"lesion{index}.png"
        Image.fromarray(blob_image(rng, center)).save(path)
        paths.append(path)
    results = explain_images(lesion_checkpoint, paths, tmp_path / "out", layer="block3")
    for result, center in zip(results, centers, strict=True):
        assert result.score > 0.5, "the model should call a lesion image referable"
        assert result.layer == "block3"
        for method, (row, col) in result.peaks.items():
            # block3 maps are 8x8 at 64 px (8-pixel cells): the peak within a cell of the disk.
            distance = np.hypot(row - center[0], col - center[1])
            assert distance <= RADIUS + 8, (method, (row, col), center)
            assert Image.open(result.files[method]).width >= 4 * SIZE  # a figure, not 64 px
        assert result.scales == results[0].scales  # one colour scale across the call


def test_explain_cli_names_the_default_layer_and_writes_overlays(tfx, lesion_checkpoint,
                                                                 tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(blob_image(np.random.default_rng(5), (20, 44))).save(image)
    done = tfx("explain", lesion_checkpoint, image, "--out", tmp_path / "maps", "--json",
               check=True)
    (result,) = json.loads(done.stdout)
    assert result["layer"] == "block4"  # the last block before the head
    assert result["target"].startswith("referable probability")
    assert sorted(result["files"]) == ["gradcam", "gradcam++"]
    assert (tmp_path / "maps" / "one.gradcam.png").is_file()
    row, col = result["peaks"]["gradcam"]
    assert np.hypot(row - 20, col - 44) <= RADIUS + 16  # 4x4 map: 16-pixel cells


def test_explain_bad_layer_is_one_line(tfx, lesion_checkpoint, tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(blob_image(np.random.default_rng(5), None)).save(image)
    result = tfx("explain", lesion_checkpoint, image, "--out", tmp_path / "m", "--layer",
                 "block9")
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "block1, block2, block3, block4" in err
