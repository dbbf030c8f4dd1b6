"""`models.trained.load_trained` and `models.runtime.resolve_device`: the one way every command
loads a checkpoint to run it, and the one reading of `--device`."""

from __future__ import annotations

import pytest
import torch

from transfusion_cli.data.bundles import DatasetInfo
from transfusion_cli.errors import CheckpointError, ConfigError
from transfusion_cli.models.checkpoint import make_checkpoint, save_checkpoint
from transfusion_cli.models.runtime import resolve_device
from transfusion_cli.models.trained import checkpoint_label, load_trained
from transfusion_cli.plugins import get
from transfusion_cli.runfolder import RunFolder

INFO = DatasetInfo("fake-chest", "multilabel", ("Atelectasis", "Cardiomegaly", "Edema"), 1, 32,
                   (0.4,), (0.2,), selection_metric="mean_auc")


@pytest.fixture
def run_checkpoint(tmp_path):
    """best.pt of a run folder: cbr-tiny with 2 input channels (not the data's 1), trained
    mode on save, batch norm statistics moved away from their defaults."""
    torch.manual_seed(0)
    model = get("architectures", "cbr-tiny").build(num_classes=3, in_chans=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    path = RunFolder(tmp_path / "run-a").best
    path.parent.mkdir(parents=True)
    save_checkpoint(make_checkpoint(model.train(), "cbr-tiny", INFO, step=12,
                                    init={"name": "imagenet"}), path)
    return path, model


def test_load_trained_rebuilds_the_saved_model_in_eval_mode(run_checkpoint):
    path, model = run_checkpoint
    trained = load_trained(path, "cpu")
    assert not trained.model.training
    assert trained.device == torch.device("cpu")
    assert (trained.arch, trained.in_chans, trained.init, trained.step) == \
        ("cbr-tiny", 2, "imagenet", 12)
    assert trained.info == INFO
    assert trained.label() == "run-a/best.pt"
    x = torch.randn(4, 2, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)  # batch norm with its running statistics, as evaluation
        assert torch.allclose(trained.model(x), expected, atol=1e-6)


def test_load_trained_resolves_a_device_name(run_checkpoint):
    path, _ = run_checkpoint
    trained = load_trained(path, "auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert trained.device.type == expected
    assert next(trained.model.parameters()).device.type == expected


def test_load_trained_of_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_trained(tmp_path / "nothing.pt")


def test_checkpoint_label_outside_a_run_folder_is_the_file_name(tmp_path):
    assert checkpoint_label(tmp_path / "weights.pt") == "weights.pt"
    assert checkpoint_label(tmp_path / "run-b" / "checkpoints" / "last.pt") == "run-b/last.pt"


def test_resolve_device_reads_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_resolve_device_rejects_what_is_not_a_device(name):
    with pytest.raises(ConfigError, match="is not a device; use auto, cpu or cuda"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_resolve_device_cuda_without_a_gpu_says_what_to_pass():
    with pytest.raises(ConfigError, match="no CUDA GPU is visible; use --device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resolve_device_plain_cuda_is_this_process_gpu():
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="only .* are visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
