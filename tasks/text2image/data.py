"""Text-to-image data modules: images with captions, or latents with text embeddings, and prompts to predict.

A training or validation sample is a dict: "pixels" (3, H, W) in [-1, 1], "caption", and SD-XL's size
conditioning "original_size" (H, W before resizing) and "crop_top_left" (in the resized image); or,
precomputed by `python -m gspn.tasks.text2image.precompute`, "latents" (already scaled), "prompt_embeds"
and for SD-XL "pooled_prompt_embeds" and "time_ids". A `gspn predict` sample is {"prompt", "index"}.

- CaptionFolderData: a folder of images, each captioned by a sidecar `<name>.txt` or by a line of
  `metadata.jsonl` ({"file_name": ..., "text": ...}, the Hugging Face imagefolder convention).
- CaptionedShapesData: the embedded SyntheticShapes with template captions (demo and tests).
- LatentCaptionData: a file written by precompute (no VAE or text encoder in the training step).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from gspn.errors import ConfigError, DataError

from ..data import TaskDataModule
from ..images import list_images, read_image
from ..shapes import CLASSES, SyntheticShapes

# A few phrasings per SyntheticShapes class, in the order of tasks/shapes.py's CLASSES.
SHAPE_CAPTIONS = {
    "horizontal_bar": ("a horizontal bar", "a flat bar across the image", "a horizontal stripe"),
    "vertical_bar": ("a vertical bar", "an upright bar", "a vertical stripe"),
    "diagonal_bar": ("a diagonal bar", "a bar from top left to bottom right", "a falling diagonal stripe"),
    "antidiagonal_bar": ("an antidiagonal bar", "a bar from bottom left to top right", "a rising diagonal stripe"),
    "side_by_side": ("two discs side by side", "two dots next to each other", "a pair of discs side by side"),
    "one_above_other": ("two discs one above the other", "two dots stacked vertically",
                        "a pair of discs one above the other"),
    "ring": ("a ring", "a circle outline", "a large ring"),
    "cross": ("a cross", "a plus sign", "a horizontal and a vertical bar crossing"),
}
LATENT_KEYS = ("latents", "prompt_embeds")  # what every precomputed file holds
SDXL_KEYS = ("pooled_prompt_embeds", "time_ids")  # and what an SD-XL one adds


def shape_caption(label: int, index: int) -> str:
    """The caption of SyntheticShapes sample `index` (of class `label`): its class's phrasings in turn."""
    phrasings = SHAPE_CAPTIONS[CLASSES[label]]
    return phrasings[(index // len(CLASSES)) % len(phrasings)]


def sample(pixels: Tensor, caption: str, original_size: tuple[int, int], crop_top_left: tuple[int, int]) -> dict:
    """A training sample from an image in [0, 1]."""
    return {"pixels": pixels * 2 - 1, "caption": caption, "original_size": torch.tensor(original_size),
            "crop_top_left": torch.tensor(crop_top_left)}


def resize_and_crop(image: Tensor, resolution: int, random_crop: bool) -> tuple[Tensor, tuple[int, int]]:
    """The short side resized to `resolution`, then a square crop (random, or centred); also its top-left."""
    h, w = image.shape[-2:]
    scale = resolution / min(h, w)
    size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    spare = (size[0] - resolution, size[1] - resolution)
    if random_crop:
        top, left = (int(torch.randint(extra + 1, ())) for extra in spare)
    else:
        top, left = spare[0] // 2, spare[1] // 2
    return image[:, top:top + resolution, left:left + resolution].clamp(0, 1), (top, left)


class CaptionedImages(Dataset):
    """Image files with their captions, resized and cropped to `resolution` pixels."""

    def __init__(self, paths: Sequence[Path], captions: Sequence[str], resolution: int, random_crop: bool):
        self.paths, self.captions = list(paths), list(captions)
        self.resolution, self.random_crop = resolution, random_crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = read_image(self.paths[index])
        pixels, crop = resize_and_crop(image, self.resolution, self.random_crop)
        return sample(pixels, self.captions[index], tuple(image.shape[-2:]), crop)


class TensorSamples(Dataset):
    """Samples from tensors of equal length (and an optional list of captions)."""

    def __init__(self, tensors: dict[str, Tensor], captions: Sequence[str] | None = None):
        self.tensors, self.captions = tensors, captions
        self.size = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        item = {key: tensor[index] for key, tensor in self.tensors.items()}
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item


class Prompts(Dataset):
    def __init__(self, prompts: Sequence[str]):
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict:
        return {"prompt": self.prompts[index], "index": index}


class Text2ImageData(TaskDataModule):
    """The base of the text-to-image data modules: batches, and the prompts of `gspn predict`.

    Args:
        batch_size: samples per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        prompts: what `gspn predict` draws, one image per prompt.
        prompts_file: a text file of further prompts, one a line (blank lines skipped).
    """

    def __init__(self, batch_size: int, num_workers: int, prompts: Sequence[str] | None, prompts_file: str | None):
        super().__init__(batch_size, num_workers)
        self.prompts = list(prompts or [])
        self.prompts_file = Path(prompts_file) if prompts_file else None
        if self.prompts_file is not None and not self.prompts_file.is_file():
            raise ConfigError(f"{type(self).__name__}: prompts_file {self.prompts_file} is not a file")

    @property
    def vocabulary(self) -> list[str]:
        """The caption words, each made one token by a tiny tokenizer (none: letters only)."""
        return []

    def predict_prompts(self) -> list[str]:
        """prompts, then the lines of prompts_file; none at all is an error."""
        prompts = list(self.prompts)
        if self.prompts_file is not None:
            prompts += [line.strip() for line in self.prompts_file.read_text().splitlines() if line.strip()]
        if not prompts:
            where = f"prompts_file {self.prompts_file} has no prompt" if self.prompts_file else "no prompts are given"
            raise ConfigError(f"{type(self).__name__}: gspn predict draws one image per prompt, but {where}; give "
                              "--data.init_args.prompts '[\"a ring\", ...]' or a prompts_file (one prompt a line)")
        return prompts

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self.datasets["predict"] = Prompts(self.predict_prompts())
        else:
            self.setup_splits()

    def setup_splits(self) -> None:
        """Fill self.datasets["train"] and ["val"]."""
        raise NotImplementedError


def held_out(count: int, num_val: int, owner: str, what: str) -> tuple[list[int], list[int]]:
    """A fixed split of range(count): (training indices, the num_val validation indices)."""
    if count <= num_val:
        raise DataError(f"{owner}: {what} holds {count} samples, not more than the {num_val} held out for validation "
                        "(lower num_val)")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0)).tolist()
    return order[:count - num_val], order[count - num_val:]


class CaptionFolderData(Text2ImageData):
    """Images with captions from a folder: a sidecar `<name>.txt` per image, or `metadata.jsonl` lines.

    Every image below root needs a caption: from root/metadata.jsonl ({"file_name": path relative to
    root, "text": caption}, one JSON object a line), else from the text file beside it with the same
    name; an image with neither is an error naming it. Images are resized (short side) to resolution
    and cropped square; num_val of them, fixed, are held out for validation (always centre-cropped).

    Args:
        root: the folder of images (searched recursively).
        resolution: the side in pixels of the training images.
        center_crop: crop the centre; False: a random crop (in training).
        num_val: images held out for validation.
        batch_size: samples per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        prompts: what `gspn predict` draws, one image per prompt.
        prompts_file: a text file of further prompts, one a line (blank lines skipped).
    """

    def __init__(self, root: str, resolution: int = 512, center_crop: bool = True, num_val: int = 8,
                 batch_size: int = 4, num_workers: int = 4, prompts: Sequence[str] | None = None,
                 prompts_file: str | None = None):
        super().__init__(batch_size, num_workers, prompts, prompts_file)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"CaptionFolderData: root {self.root} is not a folder")
        self.resolution, self.center_crop, self.num_val = resolution, center_crop, num_val
        self.paths = list_images(self.root)
        if not self.paths:
            raise DataError(f"CaptionFolderData: no images below {self.root}")
        self.captions = self.read_captions()

    def read_captions(self) -> list[str]:
        listed = {}
        metadata = self.root / "metadata.jsonl"
        if metadata.is_file():
            for number, line in enumerate(metadata.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    listed[(self.root / entry["file_name"]).resolve()] = str(entry["text"])
                except (ValueError, KeyError, TypeError) as error:
                    raise DataError(f"CaptionFolderData: {metadata} line {number}: expected a JSON object with "
                                    f"file_name and text ({type(error).__name__}: {error})") from error
        captions, uncaptioned = [], []
        for path in self.paths:
            sidecar = path.with_suffix(".txt")
            if path.resolve() in listed:
                captions.append(listed[path.resolve()])
            elif sidecar.is_file():
                captions.append(sidecar.read_text().strip())
            else:
                uncaptioned.append(path)
        if uncaptioned:
            shown = ", ".join(map(str, uncaptioned[:5])) + (", ..." if len(uncaptioned) > 5 else "")
            raise DataError(f"CaptionFolderData: {len(uncaptioned)} images have no caption: {shown}; give each a "
                            f"text file of the same name (<name>.txt) or a line in {metadata}")
        return captions

    def setup_splits(self) -> None:
        train, val = held_out(len(self.paths), self.num_val, "CaptionFolderData", str(self.root))
        for split, indices, random_crop in (("train", train, not self.center_crop), ("val", val, False)):
            self.datasets[split] = CaptionedImages([self.paths[i] for i in indices],
                                                   [self.captions[i] for i in indices], self.resolution, random_crop)


class CaptionedShapesData(Text2ImageData):
    """SyntheticShapes with a caption per image: its class in one of a few phrasings ("a ring", ...).

    Deterministic: image i of a split is a function of (seed, i) and its caption is the
    (i // 8)-th phrasing of its class, in turn. Train and val are disjoint draws (seeds seed and
    seed + 1). `vocabulary`: the caption words (a tiny tokenizer makes each one token).

    Args:
        num_train: the number of training images.
        num_val: the number of validation images.
        image_size: the side of the images in pixels.
        batch_size: samples per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        seed: the draw: train and val use seed and seed + 1.
        noise: the standard deviation of the pixel noise added to every image (in [0, 1]).
        prompts: what `gspn predict` draws, one image per prompt.
        prompts_file: a text file of further prompts, one a line (blank lines skipped).
    """

    def __init__(self, num_train: int = 8192, num_val: int = 256, image_size: int = 32, batch_size: int = 32,
                 num_workers: int = 0, seed: int = 0, noise: float = 0.08, prompts: Sequence[str] | None = None,
                 prompts_file: str | None = None):
        super().__init__(batch_size, num_workers, prompts, prompts_file)
        self.sizes = {"train": (num_train, seed), "val": (num_val, seed + 1)}
        self.image_size, self.noise = image_size, noise

    @property
    def vocabulary(self) -> list[str]:
        return sorted({word for phrasings in SHAPE_CAPTIONS.values() for caption in phrasings
                       for word in caption.split()})

    def setup_splits(self) -> None:
        # rendered once into memory: rendering in every epoch would cost a good part of a CPU step
        size = self.image_size
        for split, (count, seed) in self.sizes.items():
            shapes = SyntheticShapes(count, size, seed, self.noise)
            images, labels = zip(*(shapes[i] for i in range(count)))
            tensors = {"pixels": torch.stack(images) * 2 - 1, "original_size": torch.tensor([[size, size]] * count),
                       "crop_top_left": torch.zeros(count, 2, dtype=torch.long)}
            self.datasets[split] = TensorSamples(tensors, [shape_caption(label, i) for i, label in enumerate(labels)])


def read_latent_file(path: Path) -> dict[str, Tensor]:
    """The tensors of a precomputed file (read with weights_only=True); a file without them is an error."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (torch raises many kinds for a foreign or truncated file)
        raise DataError(f"LatentCaptionData: {path}: cannot read it ({type(error).__name__}); write it with "
                        "python -m gspn.tasks.text2image.precompute") from error
    missing = [key for key in LATENT_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise DataError(f"LatentCaptionData: {path} lacks {', '.join(missing)}; write it with "
                        "python -m gspn.tasks.text2image.precompute")
    return {key: content[key] for key in (*LATENT_KEYS, *SDXL_KEYS) if key in content}


class LatentCaptionData(Text2ImageData):
    """Latents and text embeddings precomputed by `python -m gspn.tasks.text2image.precompute`.

    The training step then runs neither the VAE nor the text encoders. The file must come from the
    pipeline the task trains (the same VAE, text encoders and resolution).

    Args:
        path: the file written by precompute.
        num_val: samples held out for validation.
        batch_size: samples per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        prompts: what `gspn predict` draws, one image per prompt.
        prompts_file: a text file of further prompts, one a line (blank lines skipped).
    """

    def __init__(self, path: str, num_val: int = 8, batch_size: int = 4, num_workers: int = 0,
                 prompts: Sequence[str] | None = None, prompts_file: str | None = None):
        super().__init__(batch_size, num_workers, prompts, prompts_file)
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"LatentCaptionData: path {self.path} is not a file (write it with "
                            "python -m gspn.tasks.text2image.precompute)")
        self.num_val = num_val

    def setup_splits(self) -> None:
        tensors = read_latent_file(self.path)
        train, val = held_out(len(tensors["latents"]), self.num_val, "LatentCaptionData", str(self.path))
        for split, indices in (("train", train), ("val", val)):
            self.datasets[split] = TensorSamples({key: tensor[indices] for key, tensor in tensors.items()})
