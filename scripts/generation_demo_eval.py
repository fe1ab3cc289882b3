"""Measure a generation checkpoint on SyntheticShapes with an independent classifier checkpoint:
class accuracy of guided samples, FID and KID on the classifier's pooled features, and the
real-versus-real FID of two disjoint real splits of the same size.

    python scripts/generation_demo_eval.py GENERATOR.ckpt CLASSIFIER.ckpt [--samples 512] [--guidance 3]
"""

import argparse
import time

import torch

from gspn.tasks.classification.data import SyntheticShapesDataModule
from gspn.tasks.generation import GenerationTask, SyntheticShapesGenerationData
from gspn.tasks.generation.quality import SampleQuality, load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator")
    parser.add_argument("classifier")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--guidance", type=float, default=None, help="default: the checkpoint's guidance_scale")
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    task = GenerationTask.load_from_checkpoint(args.generator, map_location="cpu").eval()
    judge = load_classifier(args.classifier, SyntheticShapesDataModule.mean, SyntheticShapesDataModule.std)
    quality = SampleQuality("classifier", judge, kid_subset_size=min(100, args.samples))
    data = SyntheticShapesGenerationData(num_val=args.samples, image_size=task.hparams.image_size)
    data.setup("validate")
    for split, reference in (("val", False), ("reference", True)):
        for images, labels in torch.utils.data.DataLoader(data.datasets[split], batch_size=args.batch):
            quality.update_real((images + 1) / 2, labels, reference=reference)
    start = time.perf_counter()
    for first in range(0, args.samples, args.batch):
        labels = torch.arange(first, min(first + args.batch, args.samples)) % task.hparams.num_classes
        noise = task.sample_noise(labels, torch.arange(first, first + len(labels)) + 2_000_000)
        images = task.generate(labels, noise, sampler=args.sampler, steps=args.steps, guidance_scale=args.guidance)
        quality.update_fake((images + 1) / 2, labels)
    seconds = time.perf_counter() - start
    for key, value in quality.compute().items():
        print(f"{key:>18}: {value:.4f}")
    print(f"{'sampling':>18}: {args.samples} samples in {seconds:.0f} s")


if __name__ == "__main__":
    main()
