"""`gspn export`: a checkpoint of a tiny fit becomes a weights folder through the command's entry point,
with the EMA weights, the card naming the task, metrics and config, and one-line errors for wrong files;
a segmentation checkpoint becomes a folder of its segmentor."""

import json
import sys
from pathlib import Path

import pytest
import torch

from gspn.cli import cli_main, main
from gspn.models import from_pretrained, read_checkpoint
from gspn.tasks.backbones import backbone_from_checkpoint

from .conftest import tiny_config, write_config


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """(last.ckpt, config) of a two-step classification fit with an EMA."""
    root = tmp_path_factory.mktemp("export")
    config = tiny_config(root / "run", num_sanity_val_steps=0, logger=False)
    config["data"]["init_args"].update(num_train=16, num_val=8)
    config["model"]["init_args"]["ema_decay"] = 0.9
    config_file = write_config(root / "tiny.yaml", config)
    cli = cli_main(["fit", "--config", config_file])
    return Path(cli.trainer.checkpoint_callback.last_model_path), config_file


def gspn(monkeypatch, *arguments: str) -> None:
    """The `gspn` console entry point, in this process (a new one would spend seconds importing Lightning)."""
    monkeypatch.setattr(sys, "argv", ["gspn", *arguments])
    main()


def test_export_writes_the_ema_network_with_its_card_and_preprocessing(run, tmp_path, monkeypatch, capsys):
    checkpoint_path, config_file = run
    folder = tmp_path / "folder"
    gspn(monkeypatch, "export", "--ckpt_path", str(checkpoint_path), str(folder), "--config", config_file)
    assert f"wrote {folder}" in capsys.readouterr().out
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    checkpoint = read_checkpoint(checkpoint_path)
    exported = from_pretrained(folder).eval()
    averaged = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()}
    raw = {key.removeprefix("model."): value for key, value in checkpoint["current_model_state"].items()}
    assert all(torch.equal(value, averaged[key]) for key, value in exported.state_dict().items())
    assert not all(torch.equal(averaged[key], raw[key]) for key in averaged)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(exported(images), backbone_from_checkpoint(checkpoint_path, "test").eval()(images))

    preprocessing = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    assert preprocessing == exported.pretrained_cfg
    assert preprocessing["mean"] == [0.5] * 3 and preprocessing["std"] == [0.25] * 3
    assert preprocessing["input_size"] == [3, 32, 32] and len(preprocessing["class_names"]) == 8

    card = (folder / "README.md").read_text()
    best = next(state["best_model_score"] for state in checkpoint["callbacks"].values() if "best_model_score" in state)
    assert f"| val_acc1 (best of the run) | {float(best):.6g} |" in card
    assert "- task: gspn.tasks.classification.ClassificationTask" in card
    assert "- weights: the exponential moving average (decay 0.9)" in card and "step 2 of 2" in card
    assert "    backbone: gspn_nano\n" in card and "    ema_decay: 0.9\n" in card


def test_export_with_onnx_writes_a_model_that_onnxruntime_runs_at_another_size(run, tmp_path, monkeypatch, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    checkpoint_path, _ = run
    folder = tmp_path / "folder"
    gspn(monkeypatch, "export", "--ckpt_path", str(checkpoint_path), str(folder), "--onnx")
    assert "model.onnx" in capsys.readouterr().out
    images = torch.randn(1, 3, 37, 53)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    (logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), from_pretrained(folder).eval()(images), rtol=1e-4, atol=1e-5)
    with pytest.raises(SystemExit):
        gspn(monkeypatch, "export", "--ckpt_path", str(checkpoint_path), str(folder), "--onnx", "32")
    assert "--onnx takes nothing or HEIGHT WIDTH, got 32" in capsys.readouterr().err


def test_last_and_best_follow_the_configs_newest_run(run, tmp_path, monkeypatch, capsys):
    checkpoint_path, config_file = run
    best = next(state["best_model_path"] for key, state in read_checkpoint(checkpoint_path)["callbacks"].items()
                if key.startswith("Checkpoint"))
    for name, expected in (("last", checkpoint_path), ("best", Path(best))):
        gspn(monkeypatch, "export", "--ckpt_path", name, str(tmp_path / name), "--config", config_file)
        capsys.readouterr()
        written = {key: value for key, value in from_pretrained(tmp_path / name).state_dict().items()}
        stored = read_checkpoint(expected)["state_dict"]
        assert all(torch.equal(value, stored[f"model.{key}"]) for key, value in written.items())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:  # without --config: ./checkpoints, which holds no run
        gspn(monkeypatch, "export", "--ckpt_path", "last", str(tmp_path / "none"))
    assert stop.value.code == 1 and "no run under checkpoints has a last.ckpt" in capsys.readouterr().err


def test_a_missing_or_wrong_file_is_one_line(tmp_path, monkeypatch, capsys):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    for path, message in ((tmp_path / "none.ckpt", "no such checkpoint file"),
                          (tmp_path / "plain.pt", "not a checkpoint of a gspn task")):
        with pytest.raises(SystemExit) as stop:
            gspn(monkeypatch, "export", "--ckpt_path", str(path), str(tmp_path / "out"))
        assert stop.value.code == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_segmentation_checkpoint_exports_its_segmentor(tmp_path):
    from gspn.tasks.export import export_checkpoint
    from gspn.tasks.segmentation.segmentor import segment
    from tests.tasks.segmentation.conftest import tiny_task

    task = tiny_task(ema_decay=0.9).eval()
    # The backbone's initial weights were a file of the training machine: not needed here.
    hparams = {"_class_path": "gspn.tasks.segmentation.SegmentationTask", **task.hparams,
               "pretrained": str(tmp_path / "elsewhere" / "imagenet.ckpt")}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "global_step": 3, "epoch": 1},
               tmp_path / "seg.ckpt")
    loaded = from_pretrained(export_checkpoint(tmp_path / "seg.ckpt", tmp_path / "folder")).eval()
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(segment(loaded, images, (32, 32)), segment(task.model, images, (32, 32)))
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["family"] == "task" and config["task"] == "gspn.tasks.segmentation.module.SegmentationTask"
    assert config["args"]["pretrained"] is None and config["args"]["backbone_args"]["dims"] == 8
    assert config["pretrained_cfg"]["class_names"] == task.hparams.class_names
