"""Diffusion with diffusers' schedulers: the training noise schedule, the noise-prediction loss,
classifier-free guidance, label dropout and the sampling loop. diffusers is imported on first use.

Training uses DDPMScheduler (1000 steps, linear betas 1e-4..0.02: the ADM/DiT schedule; or the cosine
schedule, which gives small images more steps of moderate noise). Sampling
builds DDPM, DDIM or DPM-Solver++ from the training scheduler's config, so both share the betas.
"""

import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gspn.errors import ConfigError

SAMPLERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm_solver": "DPMSolverMultistepScheduler"}
PREDICTION_TYPES = ("epsilon", "v_prediction")
# diffusers' names: "linear" (betas 1e-4..0.02, ADM/DiT), "squaredcos_cap_v2" (the cosine schedule of
# improved DDPM, Nichol & Dhariwal 2021).
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")


def training_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                       prediction_type: str = "epsilon"):
    from diffusers import DDPMScheduler

    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    if beta_schedule not in BETA_SCHEDULES:
        raise ConfigError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=1e-4, beta_end=0.02,
                         beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=False)


def sampling_scheduler(training, sampler: str, **options):
    """A fresh scheduler of kind `sampler` ("ddpm", "ddim", "dpm_solver") on the training betas;
    `options` are its own arguments (e.g. clip_sample for DDPM and DDIM, eta is a step argument)."""
    import diffusers

    check_sampler(sampler, options)
    return getattr(diffusers, SAMPLERS[sampler]).from_config(training.config, **options)


def check_sampler(sampler: str, options: dict) -> None:
    """`sampler` must be one of SAMPLERS and every key of `options` an argument of its scheduler:
    diffusers would ignore a misspelt one without a word."""
    import diffusers

    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}")
    scheduler = getattr(diffusers, SAMPLERS[sampler])
    valid = [name for name in inspect.signature(scheduler.__init__).parameters if name != "self"]
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise ConfigError(f"sampler_args: {', '.join(map(repr, unknown))} is not an argument of the {sampler} sampler "
                          f"({scheduler.__name__}); valid: {', '.join(valid)}")


def drop_labels(labels: Tensor, rate: float, null_label: int) -> Tensor:
    """Replace each label by the null class with probability `rate` (classifier-free guidance training)."""
    if rate <= 0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device) < rate
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def diffusion_loss(denoiser: nn.Module, scheduler, x0: Tensor, labels: Tensor | None,
                   generator: torch.Generator | None = None, snr_gamma: float | None = None,
                   snr_floor: float | None = None) -> Tensor:
    """MSE between the denoiser's output and the noise (or v) of x0 noised at uniformly random timesteps.

    Each sample's error can be weighted so that the implied x0 error weight is SNR(t) clamped to
    [snr_floor, snr_gamma]. snr_gamma: Min-SNR-gamma (Hang et al., 2023): timesteps of little noise stop
    dominating the gradient. snr_floor: the floor of truncated-SNR weighting (Salimans & Ho, 2022), e.g.
    1: timesteps of heavy noise, where the layout of an image is decided, keep a weight of their own
    (with Min-SNR alone they get almost none). Both None: the plain loss."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    epsilon = scheduler.config.prediction_type == "epsilon"
    target = noise if epsilon else scheduler.get_velocity(x0, noise, t)
    error = (denoiser(noisy, t, labels).float() - target.float()).pow(2).flatten(1).mean(1)
    if snr_gamma is not None or snr_floor is not None:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, t)
        error = error * snr.clamp(min=snr_floor, max=snr_gamma) / (snr if epsilon else snr + 1)
    return error.mean()


def guided_prediction(denoiser: nn.Module, x: Tensor, t: Tensor, labels: Tensor | None, scale: float,
                      null_label: int | None) -> Tensor:
    """uncond + scale * (cond - uncond), both halves in one batch; scale 1 (or no classes) is the
    conditional prediction alone."""
    if labels is None or null_label is None or scale == 1.0:
        return denoiser(x, t, labels)
    null = torch.full_like(labels, null_label)
    cond, uncond = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return uncond + scale * (cond - uncond)


def check_guidance_scale(scale: float, name: str = "guidance_scale") -> None:
    if scale < 0:
        raise ConfigError(f"{name} must be at least 0 (1: no guidance), got {scale}")


@torch.no_grad()
def sample(denoiser: nn.Module, scheduler, noise: Tensor, labels: Tensor | None, *, steps: int,
           guidance_scale: float = 1.0, null_label: int | None = None, generator: torch.Generator | None = None,
           on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Run `scheduler` from `noise` for `steps` steps; returns x_0 in the model's space.

    on_step(t, x) is called after every step (the denoising trajectory)."""
    check_guidance_scale(guidance_scale)
    if steps < 1:
        raise ConfigError(f"sampling_steps must be at least 1, got {steps}")
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        prediction = guided_prediction(denoiser, model_input, t.expand(x.shape[0]), labels, guidance_scale, null_label)
        x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        if on_step is not None:
            on_step(int(t), x)
    return x
