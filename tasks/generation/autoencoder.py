"""Latent diffusion: a diffusers AutoencoderKL from a local folder (nothing is downloaded), latents
scaled by its scaling factor, and pre-extraction of a dataset's latents to one file."""

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from gspn.errors import CheckpointError


class LatentCodec(nn.Module):
    """Frozen AutoencoderKL: images in [-1, 1] <-> latents multiplied by the scaling factor."""

    def __init__(self, folder: str | Path):
        super().__init__()
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"autoencoder: {folder} is not a folder holding an AutoencoderKL "
                                  "(config.json and weights, as written by save_pretrained); nothing is downloaded")
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(folder, local_files_only=True).eval().requires_grad_(False)
        config = self.vae.config
        self.scaling_factor = float(config.scaling_factor)
        self.latent_channels = int(config.latent_channels)
        self.image_channels = int(config.in_channels)
        self.factor = 2 ** (len(config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return self.vae.encode(images).latent_dist.sample() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / self.scaling_factor).sample.clamp(-1, 1)


@torch.no_grad()
def extract_latents(dataset: Dataset, codec: LatentCodec, output: str | Path, *, classes: list[str],
                    image_size: int, batch_size: int = 64) -> Path:
    """Encode every (image in [-1, 1], label) of `dataset` once and save {latents (float16), labels,
    classes, image_size} to `output`, for LatentFileDataModule."""
    latents, labels = [], []
    for images, batch_labels in DataLoader(dataset, batch_size=batch_size):
        latents.append(codec.encode(images).half())
        labels.append(batch_labels)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"latents": torch.cat(latents), "labels": torch.cat(labels), "classes": list(classes),
                "image_size": image_size}, output)
    return output
