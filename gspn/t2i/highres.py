"""Progressive high-resolution generation for Stable Diffusion 1.x/2.x and SD-XL pipelines.

`upscale` is the papers' upscaling step (SDEdit with a skip residual to the noised input and a second,
dilated UNet pass per step, after DemoFusion), written once over the stock pipeline's pieces: its
`encode_prompt`, `vae`, `scheduler`, `unet` and `image_processor`. `generate_highres` chains a base
generation and several upscales.
"""

import inspect
import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from gspn.errors import ConfigError


@torch.no_grad()
def upscale(pipe, image, prompt: str, scale: float = 2, strength: float = 0.32, steps: int = 50,
            guidance_scale: float = 7.0, negative_prompt: str | None = None, cosine_scale_1: float = 3.0,
            cosine_scale_2: float = 1.0, cosine_scale_3: float = 1.0, sigma: float = 0.8, dilated_pass: bool = True,
            generator: torch.Generator | None = None, vae_tiling: bool | None = None, offload_anchors: bool = False,
            split_cfg_batch: bool = False, progress: bool = True, return_latents: bool = False):
    """Upscale an image `scale` times with a Stable Diffusion or SD-XL pipeline (SDEdit + skip residual + dilation).

    The image is resized and VAE-encoded, noised to the first of the last `strength` fraction of the scheduler's
    timesteps, and denoised again. Each step (a) pulls the latents towards the input noised to the current
    timestep ("anchor", weight c1), (b) predicts the noise with a normal UNet pass and (c) with a second pass in
    which every Conv2d of the UNet is dilated ceil(scale) times, on Gaussian-blurred latents, for global
    coherence; the two *noise predictions* are mixed with weight c2 and the scheduler steps once. (Mixing noise
    predictions, not denoised latents, keeps one scheduler step per timestep, so stochastic and multistep
    schedulers stay correct; for first-order deterministic ones the two are the same thing.) c1, c2 and the blur
    factor c3 are ((1 + cos(pi * progress)) / 2) ** cosine_scale, progress going from 0 at the first kept step to
    1 at the last: the input and the dilated pass dominate early and fade out.

    Args:
        pipe: a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline (GSPN-converted or not).
        image: a PIL image, or a tensor (3, H, W) or (1, 3, H, W) with values in [0, 1].
        prompt: the text prompt (non-empty).
        scale: the size factor, >= 1; the new size is round(scale * side) and must be a multiple of
            `pipe.vae_scale_factor` times the UNet's down-sampling factor.
        strength: the fraction (0, 1] of the `steps` timesteps that is run (SDEdit).
        steps: the number of scheduler timesteps for a full denoising.
        guidance_scale: classifier-free guidance weight; <= 1 turns guidance off.
        negative_prompt: the prompt to guide away from (used only with guidance).
        cosine_scale_1: exponent of the skip-residual weight c1 (larger: the input fades faster).
        cosine_scale_2: exponent of the dilated-pass weight c2.
        cosine_scale_3: exponent of the blur factor c3 (blur sigma = sigma * c3, floored at sigma / 100).
        sigma: standard deviation of the Gaussian blur before the dilated pass (kernel 2 * ceil(scale) - 1).
        dilated_pass: run the dilated second UNet pass (never when ceil(scale) == 1: it would be the normal one).
        generator: torch generator for the noise (fixes the result).
        vae_tiling: True / False: turn VAE tiling on / off for this call; None: leave the VAE as it is.
        offload_anchors: keep the noised anchor latents on the CPU (memory at high resolution).
        split_cfg_batch: run the conditional and unconditional UNet halves one after the other (memory).
        progress: show a tqdm progress bar.
        return_latents: also return the final latents (before decoding).

    Returns:
        The upscaled PIL image, or (image, latents) with `return_latents`.
    """
    _check_pipe(pipe)
    _check_prompt(prompt)
    if not 0 < strength <= 1:
        raise ConfigError(f"upscale: strength must be in (0, 1], got {strength}")
    if int(steps * strength) < 1:
        raise ConfigError(f"upscale: steps * strength must be >= 1 (no step left), got {steps} * {strength}")
    if scale < 1:
        raise ConfigError(f"upscale: scale must be >= 1, got {scale}")
    if sigma <= 0:
        raise ConfigError(f"upscale: sigma must be > 0, got {sigma}")
    height, width = _image_size(image)
    if not isinstance(image, torch.Tensor):
        image = image.convert("RGB")
    height, width = _target_size(pipe, round(height * scale), round(width * scale))

    device, dtype = _execution_device(pipe), pipe.unet.dtype
    guided = guidance_scale > 1
    embeds, added = _encode_prompt(pipe, prompt, negative_prompt, guided, device, (height, width))
    with _vae_tiling(pipe.vae, vae_tiling):
        pixels = pipe.image_processor.preprocess(image, height=height, width=width)
        clean = _vae_encode(pipe.vae, pixels.to(device)).to(dtype)

        timesteps = _kept_timesteps(pipe.scheduler, steps, strength, device)
        anchors = _noised_anchors(pipe.scheduler, clean, timesteps, generator, offload_anchors)
        if hasattr(pipe.scheduler, "set_begin_index"):  # only now: Euler-type add_noise obeys the begin index
            pipe.scheduler.set_begin_index(len(pipe.scheduler.timesteps) - len(timesteps))
        stochastic = "generator" in inspect.signature(pipe.scheduler.step).parameters  # DDPM, Euler ancestral...
        step_kwargs = {"generator": generator} if stochastic else {}
        dilation = math.ceil(scale)

        def noise(latents, t):
            return _predict_noise(pipe, latents, t, embeds, added, guidance_scale, split_cfg_batch)

        latents = anchors[0].to(device)
        for i, t in enumerate(_progress_bar(timesteps, progress)):
            fraction = i / max(len(timesteps) - 1, 1)
            c1, c2, c3 = (_cosine(fraction, power) for power in (cosine_scale_1, cosine_scale_2, cosine_scale_3))
            latents = (1 - c1) * latents + c1 * anchors[i].to(device)
            prediction = noise(latents, t)
            if dilated_pass and dilation > 1:
                blurred = _blur(latents, 2 * dilation - 1, sigma * max(c3, 0.01))
                with dilated_convs(pipe.unet, dilation):
                    prediction = (1 - c2) * prediction + c2 * noise(blurred, t)
            latents = pipe.scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]

        decoded = _vae_decode(pipe.vae, latents)
    result = pipe.image_processor.postprocess(decoded.float().cpu(), output_type="pil")[0]
    return (result, latents) if return_latents else result


def generate_highres(pipe, prompt: str, sizes: Sequence[int | tuple[int, int]] = (512, 1024), base_steps: int = 50,
                     steps: int | Sequence[int] = 50, strength: float | Sequence[float] = 0.32,
                     guidance_scale: float = 7.0, negative_prompt: str | None = None,
                     generator: torch.Generator | None = None, progress: bool = True, **upscale_args) -> list:
    """Generate an image at the first size with the pipeline itself, then `upscale` it to each following size.

    Args:
        pipe: a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline.
        prompt: the text prompt (non-empty).
        sizes: strictly increasing sizes, each a side (square) or a (height, width) pair; each stage must scale
            height and width by the same factor.
        base_steps: denoising steps of the base generation.
        steps, strength: `upscale`'s, one value for every stage or one per stage.
        guidance_scale, negative_prompt, generator, progress: used by the base generation and every upscale.
        **upscale_args: further `upscale` arguments (cosine scales, sigma, vae_tiling, ...).

    Returns:
        The images of every stage, base image first.
    """
    _check_pipe(pipe)
    _check_prompt(prompt)
    sizes = [(size, size) if isinstance(size, int) else tuple(size) for size in sizes]
    if not sizes:
        raise ConfigError("generate_highres: sizes is empty")
    scales = []
    for (h0, w0), (h1, w1) in zip(sizes, sizes[1:]):
        if h1 <= h0 or w1 <= w0:
            raise ConfigError(f"generate_highres: sizes must be increasing, got {(h0, w0)} then {(h1, w1)}")
        if h1 * w0 != w1 * h0:
            raise ConfigError(f"generate_highres: {(h0, w0)} -> {(h1, w1)} scales height and width differently")
        scales.append(h1 / h0)
    stage_steps = _per_stage(steps, len(scales), "steps")
    stage_strength = _per_stage(strength, len(scales), "strength")
    for size in sizes:
        _target_size(pipe, *size)

    saved = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**saved, "disable": not progress})
    try:
        height, width = sizes[0]
        images = [pipe(prompt, height=height, width=width, num_inference_steps=base_steps,
                       guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=generator).images[0]]
    finally:
        pipe.set_progress_bar_config(**saved)
    for scale, n, s in zip(scales, stage_steps, stage_strength):
        images.append(upscale(pipe, images[-1], prompt, scale=scale, strength=s, steps=n,
                              guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=generator,
                              progress=progress, **upscale_args))
    return images


@contextmanager
def dilated_convs(module: nn.Module, factor: int):
    """Multiply the dilation and padding of every Conv2d in `module` by `factor` (sizes kept), restored on exit.

    A convolution with kernel k, dilation d and padding d * (k - 1) / 2 keeps the size; scaling both d and the
    padding by `factor` keeps that true. 1x1 convolutions are unaffected (their padding is 0).
    """
    saved = [(conv, conv.dilation, conv.padding, conv._reversed_padding_repeated_twice)
             for conv in module.modules() if isinstance(conv, nn.Conv2d)]
    try:
        for conv, dilation, padding, _ in saved:
            conv.dilation = tuple(d * factor for d in dilation)
            if not isinstance(padding, str):  # "same" / "valid" adapt to the dilation by themselves
                conv.padding = tuple(p * factor for p in padding)
                # used instead of `padding` when padding_mode is not "zeros"
                conv._reversed_padding_repeated_twice = tuple(p for p in reversed(conv.padding) for _ in range(2))
        yield module
    finally:
        for conv, dilation, padding, reversed_padding in saved:
            conv.dilation, conv.padding, conv._reversed_padding_repeated_twice = dilation, padding, reversed_padding


# --- checks ---

def _check_pipe(pipe):
    missing = [name for name in ("unet", "vae", "scheduler", "image_processor", "encode_prompt")
               if getattr(pipe, name, None) is None]
    if missing:
        raise ConfigError(f"expected a Stable Diffusion / SD-XL pipeline; {type(pipe).__name__} has no "
                          f"{', '.join(missing)}")


def _check_prompt(prompt):
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"prompt must be a non-empty string, got {prompt!r}")


def _per_stage(value, stages: int, name: str) -> list:
    if isinstance(value, (int, float)):
        return [value] * stages
    if len(value) != stages:
        raise ConfigError(f"generate_highres: {name} needs one value per upscale stage ({stages}), got {len(value)}")
    return list(value)


def _image_size(image) -> tuple[int, int]:
    if isinstance(image, torch.Tensor):
        if image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
            raise ConfigError(f"upscale: a tensor image must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        return tuple(image.shape[-2:])
    if hasattr(image, "size") and hasattr(image, "convert"):  # PIL
        return image.size[1], image.size[0]
    raise ConfigError(f"upscale: image must be a PIL image or a tensor, got {type(image).__name__}")


def _target_size(pipe, height: int, width: int) -> tuple[int, int]:
    """Check that the size fits the VAE and the UNet's down-sampling (no silent cropping)."""
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if height % multiple or width % multiple:
        raise ConfigError(f"size {height}x{width} (height x width) is not a multiple of {multiple} (VAE factor "
                          f"{pipe.vae_scale_factor} x UNet down-sampling); pick another size or scale")
    return height, width


# --- pipeline pieces ---

def _execution_device(pipe) -> torch.device:
    return getattr(pipe, "_execution_device", None) or pipe.device


def _encode_prompt(pipe, prompt, negative_prompt, guided, device, size):
    """Text embeddings (unconditional first when guided) and SD-XL's added conditions (None for SD 1.x/2.x).

    SD returns (embeds, negative); SD-XL (embeds, negative, pooled, negative pooled), and its UNet also takes
    the six size numbers: original size, crop corner, target size, all from the target size here.
    """
    encoded = pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1,
                                 do_classifier_free_guidance=guided, negative_prompt=negative_prompt)
    embeds, negative = encoded[:2]
    pooled = encoded[2:4] if len(encoded) == 4 else None
    if guided:
        embeds = torch.cat([negative, embeds])
    if pooled is None or pipe.unet.config.addition_embed_type != "text_time":
        return embeds, None
    text = torch.cat([pooled[1], pooled[0]]) if guided else pooled[0]
    time_ids = torch.tensor([[*size, 0, 0, *size]], dtype=embeds.dtype, device=device).repeat(len(text), 1)
    return embeds, {"text_embeds": text.to(device), "time_ids": time_ids}


def _predict_noise(pipe, latents, t, embeds, added, guidance_scale, split):
    """One UNet noise prediction with classifier-free guidance (the model input scaled by the scheduler)."""
    guided = guidance_scale > 1
    model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)

    def unet(rows):
        cond = None if added is None else {key: value[rows] for key, value in added.items()}
        return pipe.unet(model_input[rows], t, encoder_hidden_states=embeds[rows], added_cond_kwargs=cond,
                         return_dict=False)[0]

    if not guided:
        return unet(slice(None))
    if split:
        uncond, cond = unet(slice(0, 1)), unet(slice(1, 2))
    else:
        uncond, cond = unet(slice(None)).chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _kept_timesteps(scheduler, steps: int, strength: float, device) -> torch.Tensor:
    """The last `strength` fraction of the schedule (SDEdit), as diffusers' img2img pipelines keep it."""
    scheduler.set_timesteps(steps, device=device)
    start = (steps - min(int(steps * strength), steps)) * scheduler.order
    return scheduler.timesteps[start:]


def _noised_anchors(scheduler, clean, timesteps, generator, offload: bool) -> list:
    """The clean latents noised to every kept timestep with one and the same noise."""
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    anchors = [scheduler.add_noise(clean, noise, t.reshape(1)) for t in timesteps]
    return [anchor.cpu() for anchor in anchors] if offload else anchors


def _cosine(progress: float, power: float) -> float:
    return ((1 + math.cos(math.pi * progress)) / 2) ** power


def _blur(latents: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, then the mean and standard deviation of each sample are restored."""
    x = torch.arange(kernel, device=latents.device, dtype=torch.float32) - (kernel - 1) / 2
    weights = torch.exp(-x ** 2 / (2 * sigma ** 2))
    weights = (weights / weights.sum()).to(latents.dtype)
    channels, pad = latents.shape[1], kernel // 2
    blurred = F.pad(latents, (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(blurred, weights.view(1, 1, 1, -1).expand(channels, 1, 1, kernel), groups=channels)
    blurred = F.conv2d(blurred, weights.view(1, 1, -1, 1).expand(channels, 1, kernel, 1), groups=channels)
    dims = (1, 2, 3)
    blurred = (blurred - blurred.mean(dims, keepdim=True)) / blurred.std(dims, keepdim=True)
    return blurred * latents.std(dims, keepdim=True) + latents.mean(dims, keepdim=True)


@contextmanager
def _vae_tiling(vae, enable: bool | None):
    if enable is None:
        yield
        return
    if not hasattr(vae, "use_tiling"):
        raise ConfigError(f"upscale: vae_tiling given but {type(vae).__name__} does not support tiling")
    saved = vae.use_tiling
    vae.use_tiling = bool(enable)
    try:
        yield
    finally:
        vae.use_tiling = saved


@contextmanager
def _vae_precision(vae):
    """Run an fp16 VAE that asks for it (SD-XL's `force_upcast`) in float32, as the stock pipelines do."""
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield next(vae.parameters()).dtype
    finally:
        if upcast:
            vae.to(torch.float16)


def _vae_encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    config = vae.config
    with _vae_precision(vae) as dtype:
        latents = vae.encode(pixels.to(dtype)).latent_dist.mode()
    return (latents - (getattr(config, "shift_factor", None) or 0)) * config.scaling_factor


def _vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    config = vae.config
    latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0)
    with _vae_precision(vae) as dtype:
        return vae.decode(latents.to(dtype), return_dict=False)[0]


def _progress_bar(items, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc="upscale", disable=not enabled)
