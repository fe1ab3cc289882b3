"""Text2ImageTask: GSPN distilled into the self-attention of a Stable Diffusion (XL) UNet, or a UNet trained.

"distill" (the published recipe, design brief §1.3): the student is the pipeline's UNet with every
`attn1` replaced by a GSPN module (gspn.t2i.convert), only those modules train; the teacher is a frozen
copy of the original UNet. loss = noise_weight * MSE(student, the scheduler's target: epsilon or v)
+ kd_weight * MSE(student, teacher) + feature_weight * the mean over layers of MSE(GSPN module output,
teacher attn1 output). "train": the whole UNet trains with the noise loss alone (how the CPU demo's
small teacher is made, its random tiny VAE first fitted as an autoencoder: autoencoder_steps). The
text encoders, and otherwise the VAE, are frozen; checkpoints hold only what trains (and the optimiser
state): frozen weights are rebuilt from `pretrained` or `tiny`.
"""

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from gspn.errors import ConfigError

from ..base import BaseTask
from ..figures import image_grid, log_image
from ..outputs import remove_outputs, safe_name
from .components import FROZEN_DTYPES, frozen_dtype, is_sdxl, load_pipeline, text_encoders

PREDICTION_TYPES = ("epsilon", "v_prediction")
ROLES = ("teacher", "student", "model")  # the image folders of `gspn predict`


class Conditioning(NamedTuple):
    """What the UNet is conditioned on: text embeddings, and for SD-XL the pooled text and the size numbers."""

    embeds: Tensor
    pooled: Tensor | None = None
    time_ids: Tensor | None = None

    def unet_kwargs(self, dtype: torch.dtype) -> dict:
        kwargs = {"encoder_hidden_states": self.embeds.to(dtype)}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled.to(dtype), "time_ids": self.time_ids.to(dtype)}
        return kwargs

    def where(self, mask: Tensor, other: "Conditioning") -> "Conditioning":
        """Per sample, `other` (of batch 1) where `mask` is true."""
        def pick(mine: Tensor | None, theirs: Tensor | None) -> Tensor | None:
            return mine if mine is None else torch.where(mask.view(-1, *[1] * (mine.ndim - 1)), theirs, mine)

        return Conditioning(pick(self.embeds, other.embeds), pick(self.pooled, other.pooled), self.time_ids)

    def cat(self, other: "Conditioning") -> "Conditioning":
        return Conditioning(*(mine if mine is None else torch.cat([mine, theirs]) for mine, theirs in zip(self, other)))


def cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`module` in `dtype` (diffusers warns at every cast, even to float32, hence none when it already is)."""
    return module if next(module.parameters()).dtype == dtype else module.to(dtype)


def denoise(unet: nn.Module, latents: Tensor, t: Tensor, condition: Conditioning) -> Tensor:
    """The UNet's prediction in float32, its inputs cast to its own dtype (the teacher may be bf16)."""
    dtype = unet.dtype
    return unet(latents.to(dtype), t, **condition.unet_kwargs(dtype)).sample.float()


@contextmanager
def captured_outputs(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """The output of each module in the block, by name, from forward hooks removed afterwards."""
    outputs: dict[str, Tensor] = {}
    handles = [module.register_forward_hook(lambda _, __, output, name=name: outputs.__setitem__(name, output))
               for name, module in modules.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def feature_loss(student: Mapping[str, Tensor], teacher: Mapping[str, Tensor]) -> Tensor:
    """The mean over layers of MSE(GSPN module output, teacher attn1 output): one pair per attn1."""
    if student.keys() != teacher.keys() or not student:
        raise RuntimeError(f"feature pairs do not match: student {sorted(student)}, teacher {sorted(teacher)}")
    return torch.stack([F.mse_loss(student[name].float(), teacher[name].float()) for name in student]).mean()


class Text2ImageTask(BaseTask):
    """Text-to-image with Stable Diffusion (XL): distil GSPN into a UNet's self-attention, or train a UNet.

    Components come from `pretrained`, a local pipeline folder (save_pretrained layout of a
    StableDiffusionPipeline or StableDiffusionXLPipeline; nothing is downloaded), or from `tiny`
    settings. SD-XL micro-conditioning follows the UNet's config. When fit ends, the result is
    written to export_dir: gspn.safetensors (distill; load with gspn.t2i.load) or pipeline/ (train;
    a pretrained folder for a distillation). `gspn predict` writes images for the data module's
    prompts to <output>/student, teacher (predict_teacher) or model (train mode).

    Args:
        mode: "distill" (GSPN student, frozen teacher) or "train" (the whole UNet, noise loss).
        pretrained: a local diffusers pipeline folder.
        tiny: tiny random components instead: {channels, sample_size, sdxl, scaling_factor, seed}.
        vocabulary: whole-word tokens of a tiny tokenizer, linked from the data module.
        variant: the GSPN modules: "gspn1" (per-channel) or "gspn2" (compact).
        chunk: restart the scans every chunk rows (4: the published models), None: global.
        proxy: the GSPN proxy width (default: channels // 8).
        init: "random" (published) or "teacher": to_out from the teacher's attn1, merge zeroed.
        frozen_dtype: of the teacher, VAE and text encoders (trained weights stay float32).
        noise_weight: weight of the MSE to the scheduler's target (epsilon or v).
        kd_weight: weight of the MSE to the teacher's prediction.
        feature_weight: weight of the mean MSE of the GSPN outputs to the teacher's attn1 outputs.
        caption_dropout: the rate at which training captions become "" (0: published recipe).
        gradient_checkpointing: recompute the trained UNet's activations in the backward pass.
        autoencoder_steps: train mode, for random tiny VAEs: the first N steps fit the VAE alone
            (reconstruction), then its encoder stops, its latent scale becomes 1 / their std, and its
            decoder keeps fitting while the UNet trains (0: the VAE stays frozen).
        validation_prompts: prompts of the fixed-noise image grid drawn at every validation.
        sampling_steps: DDIM steps of the grid and of `gspn predict`.
        guidance_scale: classifier-free guidance of the grid and `gspn predict` (1: none).
        sample_size: (height, width) in pixels of grid and predicted images (default: the UNet's).
        seed: of the noise of each grid row and predicted image, and of validation noise.
        predict_teacher: `gspn predict` also draws the teacher's images.
        export_dir: where fit writes its result (default: the trainer's default_root_dir).
        **kwargs: optimisation and EMA settings of BaseTask (lr, weight_decay, schedule, ...).
    """

    monitor = "val_loss"
    monitor_mode = "min"
    data_links = ("vocabulary",)
    inference_args = ("validation_prompts", "sampling_steps", "guidance_scale", "sample_size", "seed",
                      "predict_teacher")

    def __init__(self, mode: Literal["distill", "train"] = "distill", pretrained: str | None = None,
                 # vocabulary's default is a list, as the command passes it: then not "given" when resuming
                 tiny: dict | None = None, vocabulary: Sequence[str] = [],  # noqa: B006  (never changed)
                 variant: Literal["gspn1", "gspn2"] = "gspn2", chunk: int | None = 4, proxy: int | None = None,
                 init: Literal["random", "teacher"] = "random",
                 frozen_dtype: Literal["float32", "bfloat16", "float16"] = "float32", noise_weight: float = 1.0,
                 kd_weight: float = 0.5, feature_weight: float = 0.5, caption_dropout: float = 0.0,
                 gradient_checkpointing: bool = False, autoencoder_steps: int = 0,
                 validation_prompts: Sequence[str] | None = None, sampling_steps: int = 20,
                 guidance_scale: float = 1.0, sample_size: tuple[int, int] | None = None, seed: int = 0,
                 predict_teacher: bool = False, export_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)

    def check_arguments(self) -> None:
        super().check_arguments()
        hp, name = self.hparams, type(self).__name__
        for key, choices in (("mode", ("distill", "train")), ("variant", ("gspn1", "gspn2")),
                             ("init", ("random", "teacher")), ("frozen_dtype", FROZEN_DTYPES)):
            if hp[key] not in choices:
                raise ConfigError(f"{name}: {key} must be one of {', '.join(choices)}, got {hp[key]!r}")
        if hp.autoencoder_steps and hp.mode != "train" or hp.autoencoder_steps < 0:
            raise ConfigError(f"{name}: autoencoder_steps is at least 0, and 0 in mode distill (which keeps the "
                              f"pipeline's VAE), got {hp.autoencoder_steps} in mode {hp.mode}")
        if not 0 <= hp.caption_dropout < 1:
            raise ConfigError(f"{name}: caption_dropout must be in [0, 1), got {hp.caption_dropout}")
        if min(hp.noise_weight, hp.kd_weight, hp.feature_weight) < 0:
            raise ConfigError(f"{name}: noise_weight, kd_weight and feature_weight must be at least 0, got "
                              f"{hp.noise_weight}, {hp.kd_weight}, {hp.feature_weight}")
        if hp.sampling_steps < 1 or hp.guidance_scale < 0:
            raise ConfigError(f"{name}: sampling_steps must be at least 1 and guidance_scale at least 0, got "
                              f"{hp.sampling_steps}, {hp.guidance_scale}")

    def configure_models(self) -> None:
        from diffusers import DDPMScheduler

        hp, name = self.hparams, type(self).__name__
        pipe = load_pipeline(hp.pretrained, hp.tiny, hp.vocabulary, name)
        dtype = frozen_dtype(hp.frozen_dtype, name)
        # Frozen helpers live outside the module tree: neither the optimiser nor the EMA sees them.
        self.helpers: dict[str, nn.Module] = {"vae": pipe.vae}
        for module in (*text_encoders(pipe), *([] if hp.autoencoder_steps else [pipe.vae])):
            cast(module.requires_grad_(False).eval(), dtype)
        if hp.autoencoder_steps:  # registered: trained, checkpointed and exported with the pipeline
            self.vae = pipe.vae.train()
        self.pipe = pipe  # a DiffusionPipeline is no nn.Module: not part of the task's modules either
        self.model = pipe.unet.train()  # Lightning keeps each module's mode; frozen parts have no dropout
        if hp.mode == "distill":
            self.helpers["teacher"] = cast(copy.deepcopy(self.model).requires_grad_(False).eval(), dtype)
            self.convert_student()
        if hp.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"{name}: the pipeline's scheduler predicts {prediction_type!r}; supported: "
                              f"{', '.join(PREDICTION_TYPES)}")
        self.latent_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)

    def convert_student(self) -> None:
        """Only the GSPN modules of the student train; the feature pairs are its and the teacher's attn1."""
        from gspn.t2i import convert, gspn_modules

        hp = self.hparams
        self.model.requires_grad_(False)
        convert(self.model, variant=hp.variant, chunk=hp.chunk, proxy=hp.proxy, init=hp.init)
        self.student_layers = gspn_modules(self.model)
        for module in self.student_layers.values():
            module.requires_grad_(True)
        self.teacher_layers = {layer: self.teacher.get_submodule(layer) for layer in self.student_layers}

    @property
    def teacher(self) -> nn.Module | None:
        return self.helpers.get("teacher")

    @property
    def sdxl(self) -> bool:
        return is_sdxl(self.model)

    # Devices: Lightning moves the module tree; the frozen helpers follow here.
    def frozen_helpers(self) -> list[nn.Module]:
        return [*self.helpers.values(), *text_encoders(self.pipe)]

    # Checkpoints hold only what trains; the frozen weights are rebuilt with the task.
    def frozen_keys(self) -> set[str]:
        return {name for name, parameter in self.named_parameters() if not parameter.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["latent_scale"] = self.helpers["vae"].config.scaling_factor  # set_latent_scale may change it
        frozen = self.frozen_keys()
        for key in ("state_dict", "current_model_state"):  # the latter: the raw weights beside an EMA
            if key in checkpoint:
                checkpoint[key] = {name: value for name, value in checkpoint[key].items() if name not in frozen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "latent_scale" in checkpoint:
            self.helpers["vae"].register_to_config(scaling_factor=checkpoint["latent_scale"])
        current = self.state_dict()
        frozen = {name: current[name] for name in self.frozen_keys()}
        for key in ("state_dict", "current_model_state"):
            if key in checkpoint:
                checkpoint[key] = frozen | checkpoint[key]

    # Latents and conditioning.
    @torch.no_grad()
    def encode_images(self, pixels: Tensor) -> Tensor:
        """Scaled latents of images in [-1, 1]: the posterior mean (a random tiny VAE's posterior
        noise would drown its latents; a trained VAE's is negligible)."""
        vae = self.helpers["vae"]
        return vae.encode(pixels.to(vae.dtype)).latent_dist.mode().float() * vae.config.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        """Images in [-1, 1] of scaled latents."""
        vae = self.helpers["vae"]
        return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.float()

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], guided: bool = False) -> list[Conditioning]:
        """The prompts' conditioning, and with `guided` the pipeline's own unconditional one (SD: the empty
        prompt; SD-XL: zeros where its config says force_zeros_for_empty_prompt)."""
        encoded = self.pipe.encode_prompt(prompt=list(prompts), device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=guided)
        pooled = encoded[2:4] if self.sdxl else (None, None)
        return [Conditioning(embeds.float(), None if extra is None else extra.float())
                for embeds, extra in zip(encoded[:1 + guided], pooled)]

    def size_ids(self, original: Tensor, crop: Tensor, target: tuple[int, int]) -> Tensor | None:
        """SD-XL's time_ids (original size, crop top-left, target size), None for other UNets."""
        if not self.sdxl:
            return None
        target_ids = torch.tensor(target, device=original.device).expand(len(original), 2)
        return torch.cat([original, crop, target_ids], dim=1).float()

    def batch_condition(self, batch: dict, drop: bool) -> Conditioning:
        """From the batch's text embeddings, or its captions (each dropped to "" at caption_dropout if `drop`)."""
        if "prompt_embeds" in batch:
            condition = Conditioning(batch["prompt_embeds"].float(), batch.get("pooled_prompt_embeds"),
                                     batch.get("time_ids"))
        else:
            condition = self.encode_text(batch["caption"])[0]._replace(time_ids=self.size_ids(
                batch["original_size"], batch["crop_top_left"], tuple(batch["pixels"].shape[-2:])))
        if drop and self.hparams.caption_dropout > 0:
            dropped = torch.rand(len(condition.embeds), device=self.device) < self.hparams.caption_dropout
            if dropped.any():
                condition = condition.where(dropped, self.encode_text([""])[0])
        return condition

    # The VAE of a tiny pipeline, fitted first (autoencoder_steps).
    def autoencoder_loss(self, pixels: Tensor) -> Tensor:
        """The reconstruction MSE of images in [-1, 1] through the posterior mean."""
        return F.mse_loss(self.vae.decode(self.vae.encode(pixels).latent_dist.mode()).sample, pixels)

    @torch.no_grad()
    def set_latent_scale(self, pixels: Tensor) -> None:
        """Scale the latents to unit std from here on (as Stable Diffusion's scaling factor does)."""
        std = self.vae.encode(pixels).latent_dist.mode().std().item()
        self.vae.register_to_config(scaling_factor=1 / std)

    # Losses.
    def losses(self, batch: dict, generator: torch.Generator | None = None,
               training: bool = False) -> dict[str, Tensor]:
        """noise_loss, kd_loss and feature_loss (distill), decoder_loss (autoencoder_steps), and their weighted
        sum "loss"; noise and timesteps from `generator` (default the global one)."""
        hp = self.hparams
        latents = batch["latents"].float() if "latents" in batch else self.encode_images(batch["pixels"])
        condition = self.batch_condition(batch, drop=training)
        scheduler = self.noise_scheduler
        noise = torch.randn(latents.shape, generator=generator, device=self.device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator,
                          device=self.device)
        noisy = scheduler.add_noise(latents, noise, t)
        target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, t)
        with captured_outputs(getattr(self, "student_layers", {})) as student_features:
            prediction = denoise(self.model, noisy, t, condition)
        losses = {"noise_loss": F.mse_loss(prediction, target)}
        total = hp.noise_weight * losses["noise_loss"]
        if self.teacher is not None:
            with torch.no_grad(), captured_outputs(self.teacher_layers) as teacher_features:
                teacher_prediction = denoise(self.teacher, noisy, t, condition)
            losses["kd_loss"] = F.mse_loss(prediction, teacher_prediction)
            losses["feature_loss"] = feature_loss(student_features, teacher_features)
            total = total + hp.kd_weight * losses["kd_loss"] + hp.feature_weight * losses["feature_loss"]
        if hp.autoencoder_steps:
            losses["decoder_loss"] = F.mse_loss(self.decode(latents), batch["pixels"].float())
            total = total + losses["decoder_loss"]
        return {**losses, "loss": total}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        steps = self.hparams.autoencoder_steps
        if self.global_step < steps:
            losses = {"autoencoder_loss": self.autoencoder_loss(batch["pixels"])}
            losses["loss"] = losses["autoencoder_loss"]
        else:
            if steps and self.global_step == steps:
                self.set_latent_scale(batch["pixels"])
            losses = self.losses(batch, training=True)
        size = len(next(iter(batch.values())))
        for key, value in losses.items():
            self.log(f"train_{key}", value, prog_bar=key == "loss", batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Fixed noise and timesteps per batch, so validation losses of different runs compare.
        generator = torch.Generator(self.device).manual_seed(self.hparams.seed + batch_idx)
        losses = self.losses(batch, generator)
        size = len(next(iter(batch.values())))
        losses["loss"] = losses.pop("noise_loss")  # val_loss: the noise MSE, comparable between modes and weights
        for key, value in losses.items():
            self.log(f"val_{key}", value, sync_dist=True, batch_size=size)

    def on_validation_epoch_start(self) -> None:
        # Here, not at the epoch's end: the EMA callback swaps the averaged weights in before this hook.
        prompts = self.hparams.validation_prompts
        if prompts and not self.trainer.sanity_checking:
            indices = torch.arange(len(prompts))
            images = [self.generate(unet, prompts, indices) for unet in self.roles(teacher=True).values()]
            log_image(self, "samples", image_grid(torch.stack(images, 1).flatten(0, 1), len(images)))

    # Sampling.
    def roles(self, teacher: bool) -> dict[str, nn.Module]:
        """The UNets that draw images, by folder name: the teacher (if asked) and the student, or the model."""
        if self.teacher is None:
            return {"model": self.model}
        return ({"teacher": self.teacher} if teacher else {}) | {"student": self.model}

    def image_size(self) -> tuple[int, int]:
        size = self.hparams.sample_size
        if size is None:
            side = self.model.config.sample_size * self.latent_factor
            return side, side
        if len(size) != 2 or any(side < self.latent_factor or side % self.latent_factor for side in size):
            raise ConfigError(f"{type(self).__name__}: sample_size must be (height, width), multiples of the VAE's "
                              f"factor {self.latent_factor}, got {size}")
        return int(size[0]), int(size[1])

    def sample_noise(self, indices: Tensor, size: tuple[int, int]) -> Tensor:
        """The starting noise of each image from (seed, index): the same whatever the batching or the UNet."""
        shape = (self.model.config.in_channels, size[0] // self.latent_factor, size[1] // self.latent_factor)
        seeds = [int(np.random.SeedSequence([self.hparams.seed, int(index)]).generate_state(1)[0]) for index in indices]
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def generate(self, unet: nn.Module, prompts: Sequence[str], indices: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] drawn by `unet` with DDIM, from the noise of their indices."""
        from diffusers import DDIMScheduler

        hp = self.hparams
        size = self.image_size()
        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(hp.sampling_steps, device=self.device)
        n, guided = len(prompts), hp.guidance_scale != 1
        sizes = torch.tensor([size] * n, device=self.device)
        time_ids = self.size_ids(sizes, torch.zeros_like(sizes), size)
        conditions = [condition._replace(time_ids=time_ids) for condition in self.encode_text(prompts, guided)]
        condition = conditions[0].cat(conditions[1]) if guided else conditions[0]
        x = self.sample_noise(indices, size) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            if guided:
                cond, uncond = denoise(unet, torch.cat([model_input] * 2), t.expand(2 * n), condition).chunk(2)
                prediction = uncond + hp.guidance_scale * (cond - uncond)
            else:
                prediction = denoise(unet, model_input, t.expand(n), condition)
            x = scheduler.step(prediction, t, x).prev_sample
        return ((self.decode(x) + 1) / 2).clamp(0, 1)

    # `gspn predict`.
    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        roles = self.roles(teacher=self.hparams.predict_teacher)
        images = {role: self.generate(unet, batch["prompt"], batch["index"]).cpu() for role, unet in roles.items()}
        return {"images": images, "prompts": list(batch["prompt"]), "indices": batch["index"].tolist()}

    def start_prediction(self, output_dir: Path) -> None:
        """Remove the images of an earlier `gspn predict`."""
        remove_outputs(output_dir, *(f"{role}/*.png" for role in ROLES))

    def write_prediction(self, prediction: dict, output_dir: Path) -> None:
        """<output_dir>/<role>/<index>_<prompt>.png per image (the prompt made safe as a file name)."""
        processor = self.pipe.image_processor
        for role, images in prediction["images"].items():
            folder = output_dir / role
            folder.mkdir(parents=True, exist_ok=True)
            for image, prompt, index in zip(processor.numpy_to_pil(processor.pt_to_numpy(images)),
                                            prediction["prompts"], prediction["indices"]):
                image.save(folder / f"{index:05d}_{safe_name(prompt)[:80]}.png")

    # The result of a fit.
    def on_fit_end(self) -> None:
        """Export to export_dir on rank zero; after the EMA callback's on_fit_end, which puts the average in."""
        if self.trainer.is_global_zero and not self.trainer.fast_dev_run:
            self.export(self.hparams.export_dir or self.trainer.default_root_dir)

    def export(self, folder: str | Path) -> Path:
        """Write <folder>/gspn.safetensors, the GSPN modules (distill; gspn.t2i.load reads it), or
        <folder>/pipeline, the whole pipeline (train); returns the path. For a checkpoint:
        Text2ImageTask.load_from_checkpoint(path).export(folder)."""
        folder = Path(folder)
        if self.teacher is not None:
            from gspn.t2i import save

            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "gspn.safetensors"
            save(self.model, path)
            rank_zero_info(f"GSPN weights: {path} (load with gspn.t2i.load(pipe, path))")
        else:
            path = folder / "pipeline"
            self.pipe.save_pretrained(path)
            rank_zero_info(f"pipeline: {path} (a `pretrained` folder for mode distill)")
        return path
