"""The diffusers pipeline a text-to-image task works on: a local folder in diffusers' save_pretrained
layout (nothing is downloaded), or tiny random components built from a few settings (gspn/t2i/tiny.py)
for tests and the CPU demo. diffusers is imported on first use.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from gspn.errors import ConfigError

PIPELINES = {  # the pipeline classes a folder may hold, and the components the task needs of them
    "StableDiffusionPipeline": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "StableDiffusionXLPipeline": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                                  "scheduler"),
}
FROZEN_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class TinySettings:
    """The `tiny` settings of a text-to-image task: a random pipeline of gspn.t2i.tiny's components.

    channels: the UNet's channels per level; sample_size: its latent side (the VAE halves the image);
    sdxl: SD-XL micro-conditioning and two text encoders; scaling_factor: the VAE's latent scale
    (about 1 / the std of the random encoder's latents of the shapes images; a task's
    autoencoder_steps measure it anew); seed: of every weight.
    """

    channels: Sequence[int] = (32, 64)
    sample_size: int = 16
    sdxl: bool = False
    scaling_factor: float = 4.0
    seed: int = 0


def load_pipeline(pretrained: str | None, tiny: dict | None, words: Sequence[str], owner: str):
    """The pipeline of `pretrained` (a folder) or of `tiny` (settings of TinySettings); exactly one is given.
    `words` become whole tokens of a tiny tokenizer; `owner` names the task in errors."""
    if (pretrained is None) == (tiny is None):
        raise ConfigError(f"{owner}: give pretrained (a local pipeline folder) or tiny (settings of tiny random "
                          f"components), not {'both' if tiny is not None else 'neither'}")
    pipe = from_folder(Path(pretrained), owner) if pretrained else tiny_components(tiny_settings(tiny, owner), words)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_pipeline_folder(folder: Path, owner: str) -> str:
    """The pipeline class of `folder`; a folder that is not a Stable Diffusion (XL) pipeline saved by
    save_pretrained is an error naming it and what it lacks."""
    index = folder / "model_index.json"
    layout = (f"expected a diffusers pipeline folder (save_pretrained of a {' or '.join(PIPELINES)}: model_index.json "
              "and a sub-folder per component)")
    if not index.is_file():
        raise ConfigError(f"{owner}: pretrained {folder} has no model_index.json; {layout}")
    try:
        components = json.loads(index.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{owner}: pretrained {folder}: cannot read model_index.json ({error}); {layout}") from error
    name = components.get("_class_name")
    if name not in PIPELINES:
        raise ConfigError(f"{owner}: pretrained {folder} holds a {name}; {layout}")
    missing = [part for part in PIPELINES[name] if part not in components or not (folder / part).is_dir()]
    if missing:
        raise ConfigError(f"{owner}: pretrained {folder} ({name}) lacks {', '.join(f'{part}/' for part in missing)}; "
                          f"{layout}")
    return name


def from_folder(folder: Path, owner: str):
    import diffusers

    name = check_pipeline_folder(folder, owner)
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if name == "StableDiffusionPipeline" else {}
    return getattr(diffusers, name).from_pretrained(folder, local_files_only=True, **extra)


def tiny_settings(tiny: dict, owner: str) -> TinySettings:
    try:
        return TinySettings(**tiny)
    except TypeError as error:
        known = ", ".join(field.name for field in fields(TinySettings))
        raise ConfigError(f"{owner}: tiny: {error.args[0].split('() ')[-1]}; the settings are {known}") from error


def tiny_components(settings: TinySettings, words: Sequence[str]):
    from gspn.t2i.tiny import tiny_pipeline, tiny_unet

    pipe = tiny_pipeline(sdxl=settings.sdxl, words=words, seed=settings.seed)
    # the tiny text encoders give 32 channels (SD-XL: 16 + 16), the cross-attention width of the UNet
    pipe.unet = tiny_unet(tuple(settings.channels), 32, settings.sdxl, settings.sample_size, settings.seed)
    pipe.vae.register_to_config(scaling_factor=settings.scaling_factor)
    return pipe


def frozen_dtype(name: str, owner: str) -> torch.dtype:
    if name not in FROZEN_DTYPES:
        raise ConfigError(f"{owner}: frozen_dtype must be one of {', '.join(FROZEN_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def text_encoders(pipe) -> list[torch.nn.Module]:
    return [encoder for encoder in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if encoder is not None]


def is_sdxl(unet) -> bool:
    """Whether the UNet takes SD-XL's micro-conditioning (pooled text and size numbers)."""
    return unet.config.addition_embed_type == "text_time"
