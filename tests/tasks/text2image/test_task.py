"""Text2ImageTask on tiny random components: the distillation step in Python, and the real `gspn` command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from gspn.cli import cli_main, export
from gspn.errors import ConfigError
from gspn.tasks.text2image import CaptionedShapesData, CaptionFolderData, Text2ImageTask
from gspn.tasks.text2image.data import CaptionedImages, TensorSamples, read_latent_file
from gspn.tasks.text2image.module import captured_outputs
from tests.config_files import write_config
from tests.platform.conftest import assert_same_weights

from .conftest import tiny_config

REPO = Path(__file__).resolve().parents[3]
LAST = ("checkpoints", "run-1", "last.ckpt")


def run(command: str, config: dict, path: Path, *extra: str):
    return cli_main([command, "--config", write_config(path, config), *extra])


def tiny_task(**kwargs) -> Text2ImageTask:
    return Text2ImageTask(tiny=kwargs.pop("tiny", {}), vocabulary=CaptionedShapesData().vocabulary, **kwargs)


@pytest.fixture(scope="module")
def batch() -> dict:
    data = CaptionedShapesData(num_train=4, num_val=1)
    data.setup("fit")
    return next(iter(DataLoader(data.datasets["train"], batch_size=4)))


def gspn_keys(task: Text2ImageTask) -> set[str]:
    from gspn.t2i import gspn_modules

    return {f"model.{name}.{key}" for name, module in gspn_modules(task.model).items()
            for key, _ in module.named_parameters()}


def test_importing_the_task_does_not_import_diffusers():
    code = "import sys, gspn.tasks.text2image; assert not {'diffusers', 'gspn.t2i'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
def test_one_distillation_step_trains_only_the_gspn_modules(batch, sdxl):
    from gspn.t2i import self_attention_names

    task = tiny_task(tiny={"sdxl": sdxl})
    assert task.sdxl == sdxl
    teacher = {key: value.clone() for key, value in task.teacher.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    losses = task.losses(batch, training=True)
    assert set(losses) == {"noise_loss", "kd_loss", "feature_loss", "loss"}
    assert all(value.isfinite() for value in losses.values())
    losses["loss"].backward()
    optimizer.step()
    assert {name for name, p in task.named_parameters() if p.grad is not None} == gspn_keys(task)
    assert all(torch.equal(teacher[key], value) for key, value in task.teacher.state_dict().items())

    layers = self_attention_names(task.teacher)
    assert layers and all(layer.endswith("attn1") for layer in layers)
    with captured_outputs(task.student_layers) as student, captured_outputs(task.teacher_layers) as original:
        task.losses(batch)
    assert sorted(student) == sorted(original) == sorted(layers)  # one feature pair per attn1


def test_the_feature_loss_falls_on_a_fixed_batch(batch):
    task = tiny_task()
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    history = []
    pair = {key: value[:2] for key, value in batch.items()}
    for _ in range(12):
        losses = task.losses(pair, generator=torch.Generator().manual_seed(0))
        history.append(losses["feature_loss"].item())
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert history[-1] < 0.5 * history[0], history


def test_fit_on_a_pipeline_folder_saves_only_the_gspn_weights_and_predict_writes_pngs(tmp_path, pipeline_folder):
    from diffusers import StableDiffusionPipeline

    import gspn.t2i

    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(pretrained=str(pipeline_folder), tiny=None)
    cli = run("fit", config, tmp_path / "fit.yaml")
    assert {"train_loss", "train_noise_loss", "train_kd_loss", "train_feature_loss", "val_loss", "val_kd_loss",
            "val_feature_loss"} <= set(cli.trainer.callback_metrics)
    checkpoint = torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)
    assert set(checkpoint["state_dict"]) == gspn_keys(cli.model)
    grids = list((tmp_path / "run").rglob("samples/step_0000002.png"))
    assert len(grids) == 1 and Image.open(grids[0]).size == (2 * 32, 2 * 32)  # teacher | student, a row a prompt

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_folder, local_files_only=True)
    gspn.t2i.load(pipe, tmp_path / "run" / "gspn.safetensors")
    for name, module in gspn.t2i.gspn_modules(pipe).items():
        assert torch.equal(module.to_out.weight, cli.model.model.get_submodule(name).to_out.weight)
    again = Text2ImageTask.load_from_checkpoint(tmp_path.joinpath("run", *LAST)).export(tmp_path / "again")
    exported, reexported = (load_file(path) for path in (tmp_path / "run" / "gspn.safetensors", again))
    assert exported.keys() == reexported.keys() and all(torch.equal(exported[k], reexported[k]) for k in exported)
    export(["--ckpt_path", str(tmp_path.joinpath("run", *LAST)), str(tmp_path / "exported")])  # gspn export
    assert load_file(tmp_path / "exported" / "gspn.safetensors").keys() == exported.keys()

    run("predict", config, tmp_path / "predict.yaml", "--ckpt_path", "last", "--model.init_args.predict_teacher",
        "true", "--model.init_args.sample_size", "[64, 48]")
    out = tmp_path / "run" / "predictions"
    for role in ("student", "teacher"):
        files = sorted(path.name for path in (out / role).iterdir())
        assert files == ["00000_a_ring.png", "00001_two_discs_side_by_side.png"]
        assert Image.open(out / role / files[0]).size == (48, 64)


def test_train_mode_exports_a_pipeline_that_a_distillation_loads(tmp_path):
    from diffusers import StableDiffusionPipeline

    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(mode="train", autoencoder_steps=1)
    cli = run("fit", config, tmp_path / "fit.yaml")
    assert {"train_autoencoder_loss", "train_noise_loss", "train_decoder_loss"} <= set(cli.trainer.logged_metrics)
    checkpoint = torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)
    state = checkpoint["state_dict"]
    assert {key.split(".")[0] for key in state} == {"model", "vae"}  # the text encoder is frozen
    assert state.keys() == cli.model.state_dict().keys()
    scale = checkpoint["latent_scale"]
    assert scale != 4.0 and scale == cli.model.pipe.vae.config.scaling_factor  # set after the autoencoder step

    folder = tmp_path / "run" / "pipeline"
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert pipe.vae.config.scaling_factor == scale
    for key, value in cli.model.state_dict().items():
        module, _, name = key.partition(".")
        assert torch.equal(getattr(pipe, {"model": "unet"}.get(module, module)).state_dict()[name], value), key
    student = Text2ImageTask(pretrained=str(folder), chunk=None)
    assert student.teacher is not None and gspn_keys(student)


def test_a_folder_that_is_not_a_pipeline_is_an_error_before_any_work(tmp_path, capsys):
    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(pretrained=str(tmp_path), tiny=None)
    with pytest.raises(SystemExit):
        run("fit", config, tmp_path / "fit.yaml")
    assert f"pretrained {tmp_path} has no model_index.json" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": []}))
    with pytest.raises(ConfigError, match=r"lacks unet/, vae/, text_encoder/, tokenizer/, scheduler/"):
        Text2ImageTask(pretrained=str(tmp_path))
    with pytest.raises(ConfigError, match="give pretrained .* not both"):
        Text2ImageTask(pretrained=str(tmp_path), tiny={})
    with pytest.raises(ConfigError, match="tiny: got an unexpected keyword argument 'width'"):
        Text2ImageTask(tiny={"width": 8})


@pytest.mark.parametrize("mode", [{"mode": "distill"}, {"mode": "train", "autoencoder_steps": 1}],
                         ids=["distill", "train-after-the-autoencoder"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, mode):
    """Caption dropout, noise and timesteps are random, the EMA stateful, the latent scale set at a step:
    the second epoch must replay."""
    def config(root: Path, callbacks: list[dict]) -> dict:
        settings = tiny_config(root, max_steps=-1, max_epochs=2, callbacks=callbacks)
        settings["model"]["init_args"].update(ema_decay=0.9, caption_dropout=0.5, validation_prompts=None, **mode)
        return settings

    run("fit", config(tmp_path / "straight", []), tmp_path / "a.yaml")
    stop = [{"class_path": "tests.tasks.generation.test_task.StopAfterFirstEpoch"}]
    assert run("fit", config(tmp_path / "resumed", stop), tmp_path / "b.yaml").trainer.global_step == 2
    resumed = run("fit", config(tmp_path / "resumed", []), tmp_path / "c.yaml", "--ckpt_path", "last")
    assert resumed.trainer.global_step == 4
    assert_same_weights(tmp_path.joinpath("straight", *LAST), tmp_path.joinpath("resumed", *LAST))


def test_precomputed_latents_give_the_loss_of_the_images_they_come_from(tmp_path, pipeline_folder):
    from gspn.tasks.text2image import LatentCaptionData
    from gspn.tasks.text2image.precompute import main

    for i, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        Image.new("RGB", (40, 32), colour).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(["a ring", "a cross", "two discs side by side"][i])
    main(["--pretrained", str(pipeline_folder), "--data", str(tmp_path), "--out", str(tmp_path / "latents.pt"),
          "--resolution", "32", "--device", "cpu"])
    latents = LatentCaptionData(str(tmp_path / "latents.pt"), num_val=1)
    latents.setup("fit")
    assert latents.datasets["train"][0]["latents"].shape == (4, 16, 16)

    task = Text2ImageTask(pretrained=str(pipeline_folder))
    images = CaptionFolderData(str(tmp_path), resolution=32, num_val=0)
    image_batch = next(iter(DataLoader(CaptionedImages(images.paths, images.captions, 32, False), batch_size=3)))
    latent_batch = next(iter(DataLoader(TensorSamples(read_latent_file(tmp_path / "latents.pt")), batch_size=3)))
    from_images, from_latents = ({key: value.item() for key, value in task.losses(
        batch, torch.Generator().manual_seed(0)).items()} for batch in (image_batch, latent_batch))
    assert from_images == pytest.approx(from_latents)
