"""Weights folders: every family saved and loaded with identical outputs, the preprocessing read back,
create_model(name, pretrained=...) from a folder, a .safetensors file or a checkpoint, a folder of
another architecture refused, and a Hub id that is not cached while offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gspn
from gspn.errors import CheckpointError
from gspn.models import create_model, from_pretrained, load_checkpoint, save_pretrained

TINY_BACKBONE = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2, "num_classes": 5}
TINY_DENOISER = {"hidden": 16, "depth": 3, "d_state": 2, "mlp_ratio": 1.0}
REPO = Path(__file__).resolve().parents[2]
PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": [3, 32, 32], "crop_pct": 1.0,
                 "class_names": ["a", "b", "c", "d", "e"]}


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random, so that zero-initialised layers (adaLN-Zero) take part in the comparison."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture
def backbone():
    return randomised(create_model("gspn_nano", **TINY_BACKBONE))


@pytest.mark.parametrize("name, overrides", [("gspn_nano", TINY_BACKBONE),
                                             ("gspn2_t", {**TINY_BACKBONE, "dims": 16, "depths": [1, 1, 2, 1]})])
def test_a_backbone_round_trip_gives_identical_outputs(tmp_path, name, overrides):
    model = randomised(create_model(name, **overrides))
    folder = save_pretrained(model, tmp_path / name, pretrained_cfg=PREPROCESSING)
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = from_pretrained(folder).eval()
    assert type(loaded) is type(model) and loaded.init_args == model.init_args and loaded.architecture == name
    images = torch.randn(2, 3, 37, 45)
    assert torch.equal(loaded(images), model(images))
    assert loaded.pretrained_cfg == PREPROCESSING


def test_a_denoiser_round_trip_gives_identical_outputs(tmp_path):
    model = randomised(create_model("gspn_denoiser_nano2", **TINY_DENOISER))
    loaded = from_pretrained(save_pretrained(model, tmp_path / "denoiser")).eval()
    x, t, y = torch.randn(2, 3, 8, 12), torch.tensor([3, 700]), torch.tensor([1, 8])
    assert torch.equal(loaded(x, t, y), model(x, t, y))
    assert loaded.init_args["depth"] == 3 and loaded.pretrained_cfg == {}


def test_a_segmentor_round_trip_gives_identical_outputs(tmp_path):
    from gspn.tasks.export import save_task_network
    from gspn.tasks.segmentation.segmentor import segment
    from tests.tasks.segmentation.conftest import tiny_task

    task = tiny_task()
    model = randomised(task.model)
    loaded = from_pretrained(save_task_network(task, tmp_path / "segmentor")).eval()
    images = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(segment(loaded, images, (32, 40)), segment(model, images, (32, 40)))
    assert loaded.pretrained_cfg["class_names"] == task.hparams.class_names
    assert loaded.pretrained_cfg["mean"] == list(task.hparams.mean)


def test_config_json_rebuilds_the_architecture_and_carries_the_preprocessing(backbone, tmp_path):
    save_pretrained(backbone, tmp_path, pretrained_cfg=PREPROCESSING)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["family"] == "backbone" and config["architecture"] == "gspn_nano"
    assert config["args"] == backbone.init_args and config["args"]["dims"] == 8
    assert config["pretrained_cfg"] == PREPROCESSING


def test_create_model_loads_a_folder_a_safetensors_file_and_a_checkpoint(backbone, tmp_path):
    save_pretrained(backbone, tmp_path / "folder")
    torch.save({"state_dict": {f"model.{key}": value for key, value in backbone.state_dict().items()},
                "hyper_parameters": {}}, tmp_path / "last.ckpt")
    images = torch.randn(1, 3, 32, 32)
    for source in (tmp_path / "folder", tmp_path / "folder" / "model.safetensors", tmp_path / "last.ckpt"):
        model = gspn.create_model("gspn_nano", pretrained=source, **TINY_BACKBONE).eval()
        assert torch.equal(model(images), backbone(images)), source


def test_a_folder_of_another_architecture_is_refused_naming_both(backbone, tmp_path):
    save_pretrained(backbone, tmp_path)
    with pytest.raises(CheckpointError, match=r"weights of gspn_nano \(a backbone\), not of gspn2_t"):
        create_model("gspn2_t", pretrained=tmp_path)
    with pytest.raises(CheckpointError, match=r"holds a backbone \(gspn_nano\), not a denoiser"):
        from_pretrained(tmp_path, family="denoiser")
    with pytest.raises(CheckpointError, match="shape mismatch"):  # the same preset at another width
        create_model("gspn_nano", pretrained=tmp_path, **{**TINY_BACKBONE, "dims": 16})


def test_a_file_that_does_not_name_its_network_needs_a_preset(backbone, tmp_path):
    torch.save(backbone.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"does not say which network.*create_model\(name, pretrained="):
        from_pretrained(tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="no config.json in this folder"):
        from_pretrained(tmp_path)


def test_a_tasks_pretrained_argument_takes_a_weights_folder(backbone, tmp_path):
    save_pretrained(backbone, tmp_path)
    other = create_model("gspn_nano", **{**TINY_BACKBONE, "num_classes": 3})
    report = load_checkpoint(other, tmp_path)
    assert report.mismatched and {name for name, _, _ in report.mismatched} == {"head.fc.weight", "head.fc.bias"}
    assert torch.equal(other.stem[0].weight, backbone.stem[0].weight)


def test_the_card_says_what_the_network_is_and_names_the_metrics(backbone, tmp_path):
    training = {"task": "gspn.tasks.classification.ClassificationTask",
                "metrics": {"val_acc1 (best of the run)": 0.8125},
                "config": {"model": {"init_args": {"backbone": "gspn_nano", "ema_decay": 0.9}}}}
    save_pretrained(backbone, tmp_path, pretrained_cfg=PREPROCESSING, training=training)
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gspn\n")
    assert "A GSPN backbone (`gspn_nano`, family `backbone`)" in card
    assert "| val_acc1 (best of the run) | 0.8125 |" in card
    assert "- mean: [0.5, 0.5, 0.5]" in card and "    ema_decay: 0.9" in card


def test_an_uncached_hub_id_while_offline_says_so(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"hf-hub:owner/name: not in the local Hugging Face cache .* and "
                                              r"HF_HUB_OFFLINE=1 forbids downloading it"):
        from_pretrained("hf-hub:owner/name")
    with pytest.raises(CheckpointError, match="hf-hub:owner/name: not in the local"):
        create_model("gspn_nano", pretrained="hf-hub:owner/name")


def test_without_the_hub_extra_gspn_imports_and_saving_names_the_extra(tmp_path):
    code = ("import sys; sys.modules.update(huggingface_hub=None, safetensors=None); import gspn\n"
            "model = gspn.create_model('gspn_nano')\n"
            "try: gspn.save_pretrained(model, sys.argv[1])\n"
            "except ImportError as error: print(error)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'gspn[hub]'" in result.stdout
