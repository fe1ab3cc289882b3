"""GenerationTask: class-conditional diffusion with a GSPN denoiser, in pixel or latent space."""

import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch import Tensor

from gspn.errors import ConfigError
from gspn.models import create_model

from ..base import BaseTask
from ..figures import image_grid, log_image
from ..images import list_images, read_image
from ..outputs import remove_outputs, safe_name
from .adm_npz import SampleArchive
from .diffusion import check_guidance_scale, check_sampler, diffusion_loss, drop_labels, sample, \
    sampling_scheduler, training_scheduler

ADM_FILE = "samples.npz"  # what `gspn predict` writes with sample_files "npz"
# The scored samples' noise indices start here, far from those of the grid and of `gspn predict` (0, 1, ...).
EVAL_NOISE_OFFSET = 2_000_000


def to_uint8(images: Tensor) -> np.ndarray:
    """(..., C, H, W) images in [0, 1] as 8-bit (..., H, W, C)."""
    return (images.clamp(0, 1) * 255).round().byte().movedim(-3, -1).cpu().numpy()


def save_png(image: Tensor, path: Path) -> None:
    """A (C, H, W) image in [0, 1] as an 8-bit PNG."""
    array = to_uint8(image)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


class GenerationTask(BaseTask):
    """Class-conditional diffusion with a GSPN denoiser, in pixel or latent space.

    The sampling and scoring settings (inference_args) are taken from the command line at `gspn
    validate`, not from the checkpoint: a finished run is scored with `gspn validate --config <config>
    --ckpt_path <ckpt> --model.init_args.fid_classifier <judge> --model.init_args.eval_samples N`.

    Args:
        denoiser: a denoiser preset of gspn.models (gspn_denoiser_b2, ..., gspn_denoiser_nano2).
        denoiser_args: overrides of the preset (hidden, depth, conditioning, mlp_ratio, chunks, ...).
        num_classes: the number of classes, linked from the data module.
        image_size: the training size in pixels (default: the data module's image_size).
        autoencoder: a local folder with a diffusers AutoencoderKL for latent diffusion (None: pixels).
        prediction_type: what the denoiser predicts: "epsilon" (the noise) or "v_prediction".
        num_train_timesteps: the number of timesteps of the training schedule (1000: ADM/DiT).
        beta_schedule: the training schedule's betas: "linear" (ADM/DiT) or "squaredcos_cap_v2" (the
            cosine schedule).
        snr_gamma: Min-SNR-gamma loss weighting (e.g. 5; faster convergence), None for the plain loss.
        snr_floor: the least implied x0 weight of a timestep (truncated SNR, e.g. 1), None for none.
        label_dropout: the rate at which training labels become the null class (classifier-free guidance).
        sampler: "ddpm", "ddim" or "dpm_solver" (DPM-Solver++).
        sampling_steps: the number of sampling steps.
        sampler_args: the scheduler's own options (e.g. {clip_sample: true} for DDPM/DDIM in pixel space).
        guidance_scale: for the validation grid and `gspn predict` (1: no guidance).
        sample_size: the size in pixels of sampled images (default image_size; any multiple of the
            patch size times the autoencoder's factor).
        seed: of the grid's noise and of every predicted sample's noise.
        sample_files: what `gspn predict` writes: "png" (a PNG per sample and a grid per class), "npz"
            (samples.npz in the ADM evaluation format, for the reference FID/sFID/IS/precision/recall
            evaluator; configs/fid50k.yaml sets the FID-50K protocol) or "png+npz".
        grid_samples: samples per class in the validation grid (written to <log dir>/samples as PNG).
        eval_samples: samples generated at each validation for FID, KID and class accuracy (0: none);
            best equal to the data module's num_val, the size of the real splits. Sample i is of class
            i % num_classes from the noise of (seed, class, EVAL_NOISE_OFFSET + i) (`add_eval_samples`):
            the same samples whether validation runs inside `gspn fit` or as `gspn validate`.
        eval_guidance_scale: guidance of those samples (default guidance_scale).
        fid_features: "classifier" (the pooled features of fid_classifier) or "inception" (needs torch-fidelity).
        fid_classifier: a checkpoint of the classification task trained on the same data.
        classifier_mean: fid_classifier's input normalisation, the mean (of [0, 1] images).
        classifier_std: fid_classifier's input normalisation, the std (of [0, 1] images).
        classifier_size: the size fid_classifier was trained at: samples and real images are resized to it
            before it sees them (None: as they are), so one judge scores any training or sample size.
        kid_subset_size: KID's subset size (capped by the number of samples); its subsets are drawn from seed.
        **kwargs: optimisation and EMA settings of BaseTask (lr, weight_decay, warmup_steps, ema_decay, ...).
    """

    monitor = "val_loss"
    monitor_mode = "min"
    data_links = ("num_classes",)
    inference_args = ("sampler", "sampling_steps", "sampler_args", "guidance_scale", "sample_size", "seed",
                      "sample_files", "grid_samples", "eval_samples", "eval_guidance_scale", "fid_features", "fid_classifier",
                      "classifier_mean", "classifier_std", "classifier_size", "kid_subset_size")

    def __init__(self, denoiser: str = "gspn_denoiser_nano2", denoiser_args: dict | None = None,
                 num_classes: int | None = None, image_size: int | None = None, autoencoder: str | None = None,
                 prediction_type: Literal["epsilon", "v_prediction"] = "epsilon", num_train_timesteps: int = 1000,
                 beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear",
                 snr_gamma: float | None = None, snr_floor: float | None = None,
                 label_dropout: float = 0.1, sampler: Literal["ddpm", "ddim", "dpm_solver"] = "ddim",
                 sampling_steps: int = 50, sampler_args: dict | None = None, guidance_scale: float = 1.5,
                 sample_size: int | None = None, seed: int = 0,
                 sample_files: Literal["png", "npz", "png+npz"] = "png", grid_samples: int = 4, eval_samples: int = 0,
                 eval_guidance_scale: float | None = None,
                 fid_features: Literal["classifier", "inception"] = "classifier", fid_classifier: str | None = None,
                 classifier_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
                 classifier_std: tuple[float, float, float] = (0.25, 0.25, 0.25), classifier_size: int | None = None,
                 kid_subset_size: int = 100, **kwargs):
        super().__init__(**kwargs)

    def check_arguments(self) -> None:
        super().check_arguments()
        hp, name = self.hparams, type(self).__name__
        for key in ("guidance_scale", "eval_guidance_scale"):
            if hp[key] is not None:
                check_guidance_scale(hp[key], f"{name}: {key}")
        if hp.snr_gamma is not None and hp.snr_gamma <= 0:
            raise ConfigError(f"{name}: snr_gamma must be positive (or None: no weighting), got {hp.snr_gamma}")
        if hp.snr_floor is not None and not 0 < hp.snr_floor <= (hp.snr_gamma or float("inf")):
            raise ConfigError(f"{name}: snr_floor must be positive and at most snr_gamma ({hp.snr_gamma}), "
                              f"got {hp.snr_floor}")
        if not 0 <= hp.label_dropout < 1:
            raise ConfigError(f"{name}: label_dropout must be in [0, 1), got {hp.label_dropout}")
        check_sampler(hp.sampler, hp.sampler_args or {})  # prediction_type: checked by training_scheduler
        if hp.sampling_steps < 1 or hp.eval_samples < 0 or hp.grid_samples < 0:
            raise ConfigError(f"{name}: sampling_steps must be at least 1 and eval_samples, grid_samples at least 0, "
                              f"got {hp.sampling_steps}, {hp.eval_samples}, {hp.grid_samples}")
        if hp.classifier_size is not None and hp.classifier_size < 1:
            raise ConfigError(f"{name}: classifier_size must be a positive size in pixels (or None), "
                              f"got {hp.classifier_size}")

    def configure_models(self) -> None:
        from .autoencoder import LatentCodec

        hp = self.hparams
        # Frozen helpers live outside the module tree: checkpoints hold only the denoiser, and
        # neither the optimiser nor the EMA sees them.
        self.helpers: dict[str, torch.nn.Module] = {}
        if hp.autoencoder:
            self.helpers["codec"] = LatentCodec(hp.autoencoder)
        in_chans = self.codec.latent_channels if self.codec else 3
        self.model = create_model(hp.denoiser, "denoiser", **{"num_classes": hp.num_classes, "in_chans": in_chans,
                                                  **(hp.denoiser_args or {})})
        if self.model.in_chans != in_chans:
            raise ConfigError(f"{type(self).__name__}: the denoiser takes {self.model.in_chans} channels but the "
                              f"{'autoencoder' if self.codec else 'images'} give {in_chans}")
        self.scheduler = training_scheduler(hp.num_train_timesteps, hp.beta_schedule, hp.prediction_type)
        self.check_size("image_size", hp.image_size)
        self.check_size("sample_size", hp.sample_size)

    def configure_metrics(self) -> None:
        hp = self.hparams
        if hp.eval_samples or hp.fid_classifier:
            from .quality import SampleQuality, load_classifier

            classifier = load_classifier(hp.fid_classifier, hp.classifier_mean, hp.classifier_std,
                                         hp.classifier_size) if hp.fid_classifier else None
            self.helpers["quality"] = SampleQuality(hp.fid_features, classifier, hp.kid_subset_size)

    def setup(self, stage: str) -> None:
        # image_size comes from the data module when not given (not a command link: a link would also
        # reach every other task's arguments).
        if self.hparams.image_size is None:
            self.hparams.image_size = getattr(self.trainer.datamodule, "image_size", None)
            self.check_size("image_size", self.hparams.image_size)
        if self.quality is not None:
            self.quality.class_names = getattr(self.trainer.datamodule, "classes", None)

    @property
    def codec(self):
        return self.helpers.get("codec")

    @property
    def quality(self):
        return self.helpers.get("quality")

    @property
    def null_label(self) -> int | None:
        return self.hparams.num_classes or None

    def check_size(self, key: str, size: int | None) -> None:
        step = self.model.patch_size * (self.codec.factor if self.codec else 1)
        if size is not None and (size < step or size % step):
            raise ConfigError(f"{type(self).__name__}: {key} {size} is not a multiple of {step} (the patch size "
                              f"{self.model.patch_size}{f' times the autoencoder factor {self.codec.factor}' if self.codec else ''})")

    # Model space: pixels in [-1, 1], or scaled latents.
    def frozen_helpers(self) -> list[torch.nn.Module]:
        return list(self.helpers.values())

    def to_model_space(self, images: Tensor) -> Tensor:
        """Images are encoded when an autoencoder is set; inputs already of the denoiser's channel
        count (pre-extracted latents) pass through."""
        if self.codec is None or images.shape[1] == self.model.in_chans:
            return images
        return self.codec.encode(images)

    def to_pixels(self, x: Tensor) -> Tensor:
        return (self.codec.decode(x) if self.codec else x).clamp(-1, 1)

    # Training and validation.
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        labels = drop_labels(labels, self.hparams.label_dropout, self.null_label) if self.null_label else None
        loss = diffusion_loss(self.model, self.scheduler, self.to_model_space(images), labels,
                              snr_gamma=self.hparams.snr_gamma, snr_floor=self.hparams.snr_floor)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch
        x0 = self.to_model_space(images)
        if dataloader_idx == 0:
            # Fixed noise and timesteps per batch, so validation losses of different runs compare.
            generator = torch.Generator(self.device).manual_seed(self.hparams.seed + batch_idx)
            loss = diffusion_loss(self.model, self.scheduler, x0, labels if self.null_label else None, generator,
                                  self.hparams.snr_gamma, self.hparams.snr_floor)
            self.log("val_loss", loss, sync_dist=True, add_dataloader_idx=False)
        if self.quality is not None and self.hparams.eval_samples and not self.trainer.sanity_checking:
            pixels = self.to_pixels(x0) if x0 is not images else images
            self.quality.update_real((pixels + 1) / 2, labels, reference=dataloader_idx == 1)

    def on_validation_epoch_start(self) -> None:
        # The grid and the scored samples are generated here, not at the epoch's end: Lightning runs a
        # hook of the callbacks before the task's, and the EMA callback swaps the averaged weights in at
        # on_validation_epoch_start and out again at on_validation_epoch_end. Here they are the weights
        # validation_step and the checkpoint's state_dict have, the weights `gspn validate` scores.
        if self.trainer.sanity_checking:
            return
        if self.hparams.grid_samples and self.null_label:
            self.write_grid()
        if self.quality is not None and self.hparams.eval_samples:
            self.quality.reset()  # what an interrupted validation left
            self.add_eval_samples(getattr(self.trainer.datamodule, "batch_size", None) or 64)

    def on_validation_epoch_end(self) -> None:
        if self.quality is not None and self.hparams.eval_samples and not self.trainer.sanity_checking:
            results = self.sample_quality()
            self.log_dict({f"val_{key}": value for key, value in results.items()}, sync_dist=True)

    # Scoring: validation's two steps, the one implementation of scoring a checkpoint (`gspn validate`).
    def add_eval_samples(self, batch_size: int) -> None:
        """Generate the eval_samples samples scored by validation, batch_size at a time, and give them to
        `self.quality`. Sample i is of class i % num_classes from the noise of (seed, class,
        EVAL_NOISE_OFFSET + i), with eval_guidance_scale (default guidance_scale) and the task's sampler
        and sampling_steps: nothing comes from a global generator, so a validation inside `gspn fit` and
        `gspn validate` of the checkpoint it wrote score the same samples."""
        hp = self.hparams
        scale = hp.guidance_scale if hp.eval_guidance_scale is None else hp.eval_guidance_scale
        began = time.perf_counter()
        for start in range(0, hp.eval_samples, batch_size):
            indices = torch.arange(start, min(start + batch_size, hp.eval_samples))
            labels = (indices % hp.num_classes).to(self.device)
            noise = self.sample_noise(labels, indices + EVAL_NOISE_OFFSET)
            self.quality.update_fake((self.generate(labels, noise, guidance_scale=scale) + 1) / 2, labels)
        rank_zero_info(f"generated the {hp.eval_samples} scored samples ({hp.sampler}, {hp.sampling_steps} steps, "
                       f"guidance {scale:g}) in {time.perf_counter() - began:.1f} s")

    def sample_quality(self) -> dict[str, float]:
        """The metrics of the samples and real images given to `self.quality` (fid, kid, class_acc,
        real_class_acc, fid_real_vs_real; see quality.py), KID's subsets drawn from seed; then resets it."""
        results = self.quality.compute(seed=self.hparams.seed)
        self.quality.reset()
        return results

    def write_grid(self) -> None:
        """One row per class (up to 10), grid_samples columns, fixed noise: comparable across runs."""
        classes = min(self.hparams.num_classes, 10)
        labels = torch.arange(classes, device=self.device).repeat_interleave(self.hparams.grid_samples)
        indices = torch.arange(self.hparams.grid_samples).repeat(classes)
        grid = image_grid((self.generate(labels, self.sample_noise(labels, indices)) + 1) / 2, self.hparams.grid_samples)
        log_image(self, "samples", grid)

    # Sampling.
    def sample_noise(self, labels: Tensor, indices: Tensor, size: int | None = None) -> Tensor:
        """Each sample's starting noise from (seed, label, index): the same whatever the batching."""
        size = size or self.hparams.sample_size or self.hparams.image_size
        factor = self.codec.factor if self.codec else 1
        shape = (self.model.in_chans, size // factor, size // factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(
                 int(np.random.SeedSequence([self.hparams.seed, int(label), int(index)]).generate_state(1)[0])))
                 for label, index in zip(labels.tolist(), indices.tolist())]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def generate(self, labels: Tensor, noise: Tensor, *, sampler: str | None = None, steps: int | None = None,
                 guidance_scale: float | None = None, on_step=None) -> Tensor:
        """Images in [-1, 1] (decoded when latent) for `labels` from `noise` of the model space's shape.
        `sampler` replaces the configured one, without its sampler_args (they are that sampler's options)."""
        hp = self.hparams
        scale = hp.guidance_scale if guidance_scale is None else guidance_scale
        if labels.numel() and (labels.min() < 0 or labels.max() > hp.num_classes):
            raise ConfigError(f"labels must be class indices 0-{hp.num_classes - 1} (or {hp.num_classes}, the null "
                              f"class), got {labels.tolist()}")
        self.check_size("sample size", noise.shape[-1] * (self.codec.factor if self.codec else 1))
        options = (hp.sampler_args or {}) if sampler in (None, hp.sampler) else {}
        scheduler = sampling_scheduler(self.scheduler, sampler or hp.sampler, **options)
        generator = torch.Generator(self.device).manual_seed(hp.seed)
        x = sample(self.model, scheduler, noise, labels.to(self.device) if self.null_label else None,
                   steps=steps or hp.sampling_steps, guidance_scale=scale, null_label=self.null_label,
                   generator=generator, on_step=on_step)
        return self.to_pixels(x)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        labels, indices = batch
        images = self.generate(labels, self.sample_noise(labels, indices))
        return {"images": ((images + 1) / 2).cpu(), "labels": labels.cpu(), "indices": indices.cpu()}

    def start_prediction(self, output_dir: Path) -> None:
        """Remove the samples, grids and archive of an earlier `gspn predict` (a class's grid shows every
        PNG of its folder), and an unfinished archive of this one."""
        if getattr(self, "archive", None) is not None:
            self.archive.discard()
            self.archive = None
        remove_outputs(output_dir, "*.png", "*/*.png", ADM_FILE)

    def write_prediction(self, prediction: dict[str, Tensor], output_dir: Path) -> None:
        """As sample_files says: <output_dir>/<class>/<index>.png per sample and <output_dir>/<class>.png,
        a grid of all of that class's samples so far (the class name made safe as a file name); and the
        samples, in the order predicted, into <output_dir>/samples.npz."""
        if "npz" in self.hparams.sample_files:
            self.add_to_archive(prediction, output_dir)
        if "png" in self.hparams.sample_files:
            self.write_pngs(prediction, output_dir)

    def add_to_archive(self, prediction: dict[str, Tensor], output_dir: Path) -> None:
        images = prediction["images"]
        if getattr(self, "archive", None) is None:
            count = len(self.trainer.datamodule.datasets["predict"])
            self.archive = SampleArchive(output_dir / ADM_FILE, count, images.shape[-1])
        pixels = to_uint8(images)
        if pixels.shape[-1] == 1:  # the evaluator takes RGB
            pixels = pixels.repeat(3, axis=-1)
        self.archive.add(pixels, prediction["labels"].tolist())

    def finish_prediction(self, output_dir: Path) -> None:
        if getattr(self, "archive", None) is not None:
            self.archive.close()
            self.archive = None
            rank_zero_info(f"ADM evaluation samples: {output_dir / ADM_FILE}")

    def write_pngs(self, prediction: dict[str, Tensor], output_dir: Path) -> None:
        names = getattr(self.trainer.datamodule, "classes", None)
        touched = set()
        for image, label, index in zip(prediction["images"], prediction["labels"].tolist(),
                                       prediction["indices"].tolist()):
            folder = output_dir / safe_name(names[label] if names else f"class_{label}")
            folder.mkdir(parents=True, exist_ok=True)
            save_png(image, folder / f"{index:05d}.png")
            touched.add(folder)
        for folder in touched:
            images = torch.stack([read_image(path) for path in list_images(folder)])
            save_png(image_grid(images, min(len(images), 8)), output_dir / f"{folder.name}.png")
