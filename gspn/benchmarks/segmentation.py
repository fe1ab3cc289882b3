"""Size, cost, speed and memory of UPerNet-GSPN (the ADE20K recipe's model), printed as tables.

    python -m gspn.benchmarks.segmentation [--backbone gspn_t] [--iterations 2]

Parameters and GMACs at 512 x 2048 (whole-image inference, the decode head only as mmseg counts)
next to the published UPerNet-Swin-T and UPerNet-VMamba-T; training and inference throughput at
512 x 512 on this machine's CPU (median of the iterations); peak memory of whole-image inference at
512 x 2048. Needs the `seg` extra; the task is imported only when the benchmark runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import torch

from gspn.models import count_macs, count_params

from .common import median_seconds, peak_memory, print_table

if TYPE_CHECKING:
    from gspn.tasks.segmentation import SegmentationTask

PUBLISHED = [("UPerNet-Swin-T (published)", 60e6, 945e9), ("UPerNet-VMamba-T (published)", 62e6, 949e9)]
ADE_CLASSES = 150


def build(backbone: str) -> SegmentationTask:
    from gspn.tasks.segmentation import SegmentationTask

    return SegmentationTask(backbone=backbone, num_classes=ADE_CLASSES,
                            class_names=[str(i) for i in range(ADE_CLASSES)], palette=[[0, 0, 0]] * ADE_CLASSES)


def size_table(task: SegmentationTask, name: str) -> None:
    model = task.model
    total = count_params(model)
    aux = count_params(model.auxiliary_head) if hasattr(model, "auxiliary_head") else 0
    macs = count_macs(model, (1, 3, 512, 2048))
    rows = [{"model": f"UPerNet-{name} (ours)", "params": f"{total / 1e6:.1f}M",
             "params without aux head": f"{(total - aux) / 1e6:.1f}M", "GMACs at 512x2048": f"{macs / 1e9:.0f}G"}]
    rows += [{"model": label, "params": f"{params / 1e6:.0f}M", "params without aux head": "",
              "GMACs at 512x2048": f"{flops / 1e9:.0f}G"} for label, params, flops in PUBLISHED]
    print_table(rows, markdown=True)
    print("(mmseg's published 'FLOPs' count multiply-accumulates, as our GMACs do)\n")


def speed_table(task: SegmentationTask, iterations: int, train_batch: int) -> None:
    from gspn.tasks.segmentation.segmentor import data_samples

    images = torch.rand(train_batch, 3, 512, 512)
    labels = torch.randint(0, ADE_CLASSES, (train_batch, 512, 512))
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-5)

    def train_step():
        task.train()
        losses = task.model.loss(task.normalize(images), data_samples(labels))
        sum(v for k, v in losses.items() if "loss" in k).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def inference():
        task.eval()
        with torch.no_grad():
            task(images[:1])

    times = median_seconds({"train": train_step, "inference": inference}, iterations)
    train, infer = times["train"], times["inference"]
    label = f"512x512 on CPU ({torch.get_num_threads()} threads)"
    print_table([{label: f"training step, batch {train_batch} (forward, backward, AdamW)", "seconds": f"{train:.2f}",
                  "images/s": f"{train_batch / train:.3f}"},
                 {label: "inference, one image (whole)", "seconds": f"{infer:.2f}", "images/s": f"{1 / infer:.3f}"}],
                markdown=True)
    print()


def memory_table(task: SegmentationTask) -> None:
    task.eval()

    def inference():
        with torch.no_grad():
            task(torch.rand(1, 3, 512, 2048))

    memory = peak_memory(inference)
    before, peak = (float("nan"),) * 2 if memory is None else (m / 2**30 for m in memory)
    label = "whole-image inference at 512x2048, CPU, float32"
    print_table([{label: "resident memory with the model loaded", "GiB": f"{before:.2f}"},
                 {label: "peak resident memory of the process", "GiB": f"{peak:.2f}"},
                 {label: "peak increase for the inference", "GiB": f"{peak - before:.2f}"}], markdown=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="gspn_t")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    task = build(args.backbone)
    memory_table(task)
    size_table(task, args.backbone.upper().replace("_", "-"))
    speed_table(task, args.iterations, args.train_batch)


if __name__ == "__main__":
    main()
