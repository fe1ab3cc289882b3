"""Precompute the latents and text embeddings of a caption folder, for LatentCaptionData:

    python -m gspn.tasks.text2image.precompute --pretrained /models/sd15 --data /data/captioned --out latents.pt

Every image of the folder (CaptionFolderData's captions) is centre-cropped to --resolution and encoded
by the pipeline's VAE (the task's scaled posterior mean) and its caption by the text encoder(s), exactly
as Text2ImageTask does in its training step; for SD-XL also the pooled embedding and the size numbers.
The file is one torch.save of a dict of tensors, read with weights_only=True.
"""

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .data import CaptionedImages, CaptionFolderData
from .module import Text2ImageTask


def precompute(pretrained: str, root: str, resolution: int, out: str, batch_size: int = 8,
               device: str = "cpu") -> dict[str, torch.Tensor]:
    """Write the file `out` for the images below `root`; returns its tensors."""
    data = CaptionFolderData(root, resolution=resolution, num_val=0)
    images = CaptionedImages(data.paths, data.captions, resolution, random_crop=False)
    task = Text2ImageTask(mode="train", pretrained=pretrained).to(device).eval()
    task.helpers_to_device()
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in DataLoader(images, batch_size=batch_size):
        batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        condition = task.batch_condition(batch, drop=False)
        found = {"latents": task.encode_images(batch["pixels"]), "prompt_embeds": condition.embeds,
                 "pooled_prompt_embeds": condition.pooled, "time_ids": condition.time_ids}
        for key, value in found.items():
            if value is not None:
                parts.setdefault(key, []).append(value.cpu())
    tensors = {key: torch.cat(values) for key, values in parts.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, out)
    return tensors


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gspn.tasks.text2image.precompute",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", required=True, help="a local diffusers pipeline folder (SD or SD-XL)")
    parser.add_argument("--data", required=True, help="a caption folder (see CaptionFolderData)")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--resolution", type=int, default=512, help="the side of the centre crops in pixels")
    parser.add_argument("--batch_size", type=int, default=8, help="images encoded at once")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where to encode")
    options = parser.parse_args(arguments)
    with torch.no_grad():
        tensors = precompute(options.pretrained, options.data, options.resolution, options.out, options.batch_size,
                             options.device)
    print(f"wrote {options.out}: {len(tensors['latents'])} samples ({', '.join(tensors)})")


if __name__ == "__main__":
    main()
