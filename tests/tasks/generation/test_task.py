"""GenerationTask through the real `gspn` command on tiny configs, on CPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image

from gspn.cli import cli_main
from gspn.errors import CheckpointError, ConfigError
from gspn.tasks.generation import GenerationTask, SyntheticShapesGenerationData
from gspn.tasks.generation import module as task_module
from gspn.tasks.prediction import PredictionWriter

from .conftest import TINY_DENOISER, tiny_classifier_checkpoint, tiny_config, write_config

REPO = Path(__file__).resolve().parents[3]


def run(command: str, config: dict, path: Path, *extra: str):
    return cli_main([command, "--config", write_config(path, config), *extra])


def test_importing_the_task_does_not_import_diffusers():
    code = "import sys, gspn.tasks.generation; assert 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_fit_links_the_data_writes_a_grid_then_predict_writes_files(tmp_path):
    config = tiny_config(tmp_path / "run")
    cli = run("fit", config, tmp_path / "fit.yaml")
    assert (cli.model.hparams.num_classes, cli.model.hparams.image_size) == (8, 16)
    assert {"train_loss", "val_loss"} <= set(cli.trainer.callback_metrics)
    grids = list((tmp_path / "run").rglob("samples/step_0000002.png"))
    assert len(grids) == 1 and Image.open(grids[0]).size == (16, 8 * 16)  # one column, a row per class

    config["data"]["init_args"]["samples_per_class"] = 3
    run("predict", config, tmp_path / "predict.yaml", "--ckpt_path", "last")
    out = tmp_path / "run" / "predictions"
    for name in ("horizontal_bar", "ring"):
        assert sorted(path.name for path in (out / name).iterdir()) == ["00000.png", "00001.png", "00002.png"]
        assert Image.open(out / f"{name}.png").size == (3 * 16, 16)
    assert len(list(out.iterdir())) == 4


class StopAfterFirstEpoch(Callback):
    """An interruption: the schedule still spans max_steps, but training stops after epoch 0 (2 steps)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Label dropout, noise, timesteps and the EMA are random or stateful: the second epoch must replay."""
    def config(root: Path, callbacks: list[dict]) -> dict:
        settings = tiny_config(root, max_steps=-1, max_epochs=2, callbacks=callbacks)
        settings["model"]["init_args"].update(ema_decay=0.9, warmup_steps=1, label_dropout=0.5, grid_samples=0)
        return settings

    straight = run("fit", config(tmp_path / "straight", []), tmp_path / "a.yaml").model.state_dict()
    stop = [{"class_path": f"{__name__}.StopAfterFirstEpoch"}]
    assert run("fit", config(tmp_path / "resumed", stop), tmp_path / "b.yaml").trainer.global_step == 2
    resumed_cli = run("fit", config(tmp_path / "resumed", []), tmp_path / "c.yaml", "--ckpt_path", "last")
    assert resumed_cli.trainer.global_step == 4
    resumed = resumed_cli.model.state_dict()
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_validate_reports_fid_kid_class_accuracy_and_the_real_baseline(tmp_path):
    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(eval_samples=8, kid_subset_size=4,
                                        fid_classifier=tiny_classifier_checkpoint(tmp_path / "judge.ckpt"))
    metrics = run("validate", config, tmp_path / "validate.yaml").trainer.callback_metrics
    assert {"val_loss", "val_fid", "val_kid", "val_class_acc", "val_real_class_acc", "val_fid_real_vs_real"} <= set(metrics)
    assert 0 <= metrics["val_class_acc"] <= 1 and metrics["val_fid"] >= 0
    per_class = [metrics[f"val_class_acc/{name}"] for name in SyntheticShapesGenerationData.classes]  # one sample each
    assert sum(per_class) / len(per_class) == pytest.approx(float(metrics["val_class_acc"]))


def scores(cli) -> dict[str, float]:
    return {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith("val_")}


def test_a_checkpoint_is_scored_by_validate_as_inside_fit_and_as_the_shared_code_computes(tmp_path):
    """One implementation of scoring a generation checkpoint: validation's `add_eval_samples` and
    `sample_quality`. The samples come from the task's seed and their index, the KID subsets from the
    seed, and the samples of a validation inside fit are the EMA's, as the checkpoint's weights: the fit's
    own validation (after training steps moved the global generators), two `gspn validate` runs of its
    checkpoint and a direct computation outside Lightning give the same metrics."""
    assert {"eval_samples", "eval_guidance_scale", "fid_features", "fid_classifier", "classifier_mean",
            "classifier_std", "kid_subset_size", "sampler", "sampling_steps",
            "seed"} <= set(GenerationTask.inference_args)
    judge = tiny_classifier_checkpoint(tmp_path / "judge.ckpt")
    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(ema_decay=0.9, grid_samples=0)
    scoring = ["--model.init_args.eval_samples", "8", "--model.init_args.kid_subset_size", "4"]
    fitted = scores(run("fit", config, tmp_path / "fit.yaml", *scoring, "--model.init_args.fid_classifier", judge))
    assert {"val_loss", "val_fid", "val_kid", "val_class_acc", "val_real_class_acc",
            "val_fid_real_vs_real"} <= set(fitted)

    # The checkpoint names the judge where it was; the command line's fid_classifier is the one used.
    moved = tmp_path / "judge_moved.ckpt"
    Path(judge).rename(moved)
    scoring += ["--model.init_args.fid_classifier", str(moved)]
    validated = [scores(run("validate", config, tmp_path / "validate.yaml", "--ckpt_path", "last", *scoring))
                 for _ in range(2)]
    assert validated[0] == validated[1] == fitted

    checkpoint = tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt"
    task = GenerationTask.load_from_checkpoint(checkpoint, fid_classifier=str(moved)).eval()
    data = SyntheticShapesGenerationData(**config["data"]["init_args"])
    data.setup("validate")
    task.quality.class_names = data.classes  # as the task's setup does inside the command
    for reference, loader in enumerate(data.val_dataloader()):
        for images, labels in loader:
            task.quality.update_real((images + 1) / 2, labels, reference=bool(reference))
    task.add_eval_samples(batch_size=data.batch_size)
    direct = task.sample_quality()
    assert {f"val_{key}": float(torch.tensor(value, dtype=torch.float32)) for key, value in direct.items()} == \
        {key: value for key, value in fitted.items() if key != "val_loss"}


def test_sampling_at_twice_the_training_resolution(tmp_path):
    run("fit", tiny_config(tmp_path / "run"), tmp_path / "fit.yaml")
    task = GenerationTask.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt")
    labels = torch.tensor([0, 5])
    images = task.generate(labels, task.sample_noise(labels, torch.arange(2), size=32), steps=2)
    assert images.shape == (2, 3, 32, 32) and images.isfinite().all()
    with pytest.raises(ValueError, match="multiple of 4"):
        task.check_size("sample_size", 30)


def tiny_autoencoder(folder: Path) -> str:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
                  sample_size=16).save_pretrained(folder)
    return str(folder)


def test_shapes_splits_are_rendered_once_in_the_signed_range_and_disjoint():
    from gspn.tasks.generation.data import SyntheticShapesGenerationData
    from gspn.tasks.shapes import SyntheticShapes

    data = SyntheticShapesGenerationData(num_train=16, num_val=4, image_size=16, seed=3)
    data.setup("fit")
    image, label = data.datasets["train"][5]
    rendered, rendered_label = SyntheticShapes(16, 16, 3)[5]
    assert torch.equal(image, rendered * 2 - 1) and int(label) == rendered_label
    val, reference = data.datasets["val"], data.datasets["reference"]
    assert len(data.datasets["train"]) == 16 and len(val) == len(reference) == 4
    assert not torch.equal(val[0][0], reference[0][0]) and not torch.equal(val[0][0], data.datasets["train"][0][0])


def test_latent_diffusion_with_a_local_autoencoder_and_pre_extracted_latents(tmp_path):
    from gspn.tasks.generation.autoencoder import LatentCodec, extract_latents
    from gspn.tasks.generation.data import SyntheticShapesGenerationData

    folder = tiny_autoencoder(tmp_path / "vae")
    config = tiny_config(tmp_path / "run")
    config["model"]["init_args"].update(autoencoder=folder, denoiser="gspn_denoiser_nano2")
    cli = run("fit", config, tmp_path / "latent.yaml")
    assert cli.model.model.in_chans == 4
    assert not any(key.startswith("helpers") or "vae" in key for key in cli.model.state_dict())
    run("predict", config, tmp_path / "latent.yaml", "--ckpt_path", "last")
    assert Image.open(tmp_path / "run" / "predictions" / "ring" / "00000.png").size == (16, 16)

    data = SyntheticShapesGenerationData(num_train=24, num_val=4, image_size=16)
    data.setup("fit")
    latents = extract_latents(data.datasets["train"], LatentCodec(folder), tmp_path / "latents.pt",
                              classes=data.classes, image_size=16)
    config["data"] = {"class_path": "LatentFileData",
                      "init_args": {"path": str(latents), "num_val": 4, "batch_size": 8, "num_workers": 0}}
    cli = run("fit", config, tmp_path / "from_file.yaml")
    assert cli.trainer.global_step == 2 and cli.model.hparams.image_size == 16


@pytest.mark.parametrize("override, message", [
    ({"data": {"init_args": {"predict_classes": ["ring", "star"]}}}, "'star' is not a class"),
    ({"data": {"init_args": {"predict_classes": [8]}}}, "8 is not a class"),
    ({"model": {"init_args": {"guidance_scale": -1.0}}}, "guidance_scale must be at least 0"),
    ({"data": {"init_args": {"image_size": 18}}}, "image_size 18 is not a multiple of 4"),
    ({"model": {"init_args": {"autoencoder": "/nonexistent/vae"}}}, "is not a folder holding an AutoencoderKL"),
    ({"model": {"init_args": {"sampler": "euler"}}}, "Expected a typing.Literal['ddpm', 'ddim', 'dpm_solver']. Got value: euler"),
    ({"model": {"init_args": {"beta_schedule": "cosine"}}}, "Expected a typing.Literal['linear', 'squaredcos_cap_v2']. Got value: cosine"),
    ({"model": {"init_args": {"snr_gamma": 0.0}}}, "snr_gamma must be positive"),
    ({"model": {"init_args": {"snr_floor": 0.0}}}, "snr_floor must be positive and at most snr_gamma"),
    ({"model": {"init_args": {"snr_floor": 6.0}}}, "snr_floor must be positive and at most snr_gamma (5.0)"),
    ({"model": {"init_args": {"classifier_size": 0}}}, "classifier_size must be a positive size in pixels"),
])
def test_bad_settings_are_clear_errors_before_training(override, message, config_file, tmp_path, capsys):
    bad = write_config(tmp_path / "bad.yaml", override)
    with pytest.raises((SystemExit, ValueError)) as error:  # image_size is checked when the data module is known
        cli_main(["fit", "--config", config_file, "--config", bad])
    assert message in capsys.readouterr().err + str(error.value)


def test_the_attention_control_composes_over_the_demo_and_trains(tmp_path):
    configs = REPO / "tasks" / "generation" / "configs"
    cli = cli_main(["fit", "--config", str(configs / "demo.yaml"), "--config", str(configs / "demo_attention.yaml"),
                    "--config", str(REPO / "configs" / "trainer" / "debug.yaml"),
                    "--trainer.default_root_dir", str(tmp_path), "--data.init_args.num_train", "64",
                    "--data.init_args.num_val", "16"])
    assert cli.trainer.global_step == 1
    hp = cli.model.hparams
    assert hp.denoiser_args["mixer"] == "attention" and hp.beta_schedule == "squaredcos_cap_v2"
    assert all(type(block.mixer).__name__ == "SelfAttention" for block in cli.model.model.blocks)


@pytest.mark.parametrize("attention", [False, True])
def test_the_many_token_demo_composes_over_the_demo_with_1024_tokens(attention, tmp_path):
    configs = REPO / "tasks" / "generation" / "configs"
    extra = ["--config", str(configs / "many_tokens_attention.yaml")] if attention else []
    cli = cli_main(["fit", "--config", str(configs / "demo.yaml"), "--config", str(configs / "many_tokens.yaml"), *extra,
                    "--config", str(REPO / "configs" / "trainer" / "debug.yaml"),
                    "--trainer.default_root_dir", str(tmp_path), "--data.init_args.num_train", "16",
                    "--data.init_args.num_val", "16", "--model.init_args.grid_samples", "0"])
    model = cli.model.model
    tokens = (cli.datamodule.image_size // model.patch_size) ** 2
    assert tokens == 1024 and cli.trainer.global_step == 1
    mixers = {type(block.mixer).__name__ for block in model.blocks}
    assert mixers == ({"SelfAttention"} if attention else {"GSPNMixer"})
    assert cli.model.hparams.beta_schedule == "squaredcos_cap_v2"  # the demo's, underneath


def tiny_task(**overrides) -> GenerationTask:
    settings = dict(denoiser="gspn_denoiser_nano4", denoiser_args=TINY_DENOISER, num_classes=8, image_size=16,
                    sampling_steps=1)
    return GenerationTask(**{**settings, **overrides})


def predict(task: GenerationTask, data, output_dir: Path) -> None:
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[PredictionWriter(str(output_dir))])
    trainer.predict(task, data)


class OddlyNamedShapes(SyntheticShapesGenerationData):
    classes = ["../../escaped", "a b/c", ".."] + [f"class{i}" for i in range(5)]


def test_class_names_become_safe_file_names_inside_the_output_folder(tmp_path):
    data = OddlyNamedShapes(num_train=8, num_val=2, image_size=16, samples_per_class=1, predict_classes=[0, 1, 2])
    predict(tiny_task(), data, tmp_path / "run" / "predictions")
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.png"))
    assert written == [f"run/predictions/{name}" for name in
                       ("_.png", "_/00000.png", "____escaped.png", "____escaped/00000.png", "a_b_c.png",
                        "a_b_c/00000.png")]


class Payload:
    """Any object outside tensors and containers: loading it would run code from the file."""


def test_the_fid_classifier_is_read_without_running_code_from_it(tmp_path):
    from gspn.tasks.generation.quality import load_classifier

    path = tiny_classifier_checkpoint(tmp_path / "judge.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["extra"] = Payload()
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=rf"{path}: cannot read the checkpoint: it holds a [\w.]+Payload"):
        load_classifier(path, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("sampler, key", [("ddim", "clip_sampel"), ("dpm_solver", "clip_sample"), ("ddim", "eta")])
def test_a_misspelt_sampler_argument_is_an_error_when_the_task_is_built(sampler, key):
    with pytest.raises(ConfigError, match=rf"sampler_args: '{key}' is not an argument of the {sampler} sampler "
                                          r"\(\w+Scheduler\); valid: num_train_timesteps, .*steps_offset"):
        tiny_task(sampler=sampler, sampler_args={key: True})
    assert tiny_task(sampler="ddim", sampler_args={"clip_sample": True}).hparams.sampler_args == {"clip_sample": True}


def test_another_sampler_at_generate_time_leaves_the_configured_samplers_arguments(monkeypatch):
    task = tiny_task(sampler="ddim", sampler_args={"clip_sample": True})
    given = []
    real = task_module.sampling_scheduler
    monkeypatch.setattr(task_module, "sampling_scheduler",
                        lambda training, sampler, **options: given.append((sampler, options)) or
                        real(training, sampler, **options))
    labels = torch.tensor([0, 1])
    noise = torch.randn(2, 3, 16, 16)
    for sampler in (None, "ddim", "dpm_solver"):
        assert torch.isfinite(task.generate(labels, noise, sampler=sampler, steps=2)).all()
    assert given == [("ddim", {"clip_sample": True}), ("ddim", {"clip_sample": True}), ("dpm_solver", {})]


def test_a_predict_after_start_prediction_shows_no_sample_of_an_earlier_run(tmp_path):
    out = tmp_path / "predictions"
    for name in ("ring/00000.png", "ring/00001.png", "retired_class/00000.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(out / name)
    for name in ("ring.png", "retired_class.png"):
        Image.new("RGB", (32, 16)).save(out / name)
    (out / "notes.txt").write_text("kept")
    task = tiny_task()
    task.start_prediction(out)
    data = SyntheticShapesGenerationData(num_train=8, num_val=2, image_size=16, samples_per_class=1,
                                         predict_classes=["ring"])
    predict(task, data, out)
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == ["notes.txt", "ring", "ring.png",
                                                                             "ring/00000.png"]
    assert Image.open(out / "ring.png").size == (16, 16)
