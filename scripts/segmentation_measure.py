"""Size, cost, speed and memory of UPerNet-GSPN (the ADE20K recipe's model), printed as tables.

    python scripts/segmentation_measure.py [--backbone gspn_t] [--iterations 2]

Parameters and GMACs at 512 x 2048 (whole-image inference, the decode head only as mmseg counts)
next to the published UPerNet-Swin-T and UPerNet-VMamba-T; training and inference throughput at
512 x 512 on this machine's CPU; peak memory of whole-image inference at 512 x 2048.
"""

import argparse
import resource
import time

import torch

from gspn.models import count_macs, count_params
from gspn.tasks.segmentation import SegmentationTask
from gspn.tasks.segmentation.segmentor import data_samples

PUBLISHED = [("UPerNet-Swin-T (published)", 60e6, 945e9), ("UPerNet-VMamba-T (published)", 62e6, 949e9)]
ADE_CLASSES = 150


def build(backbone: str) -> SegmentationTask:
    return SegmentationTask(backbone=backbone, num_classes=ADE_CLASSES, class_names=[str(i) for i in range(ADE_CLASSES)],
                            palette=[[0, 0, 0]] * ADE_CLASSES)


def rss_gib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def size_table(task: SegmentationTask, name: str) -> None:
    model = task.model
    total = count_params(model)
    aux = count_params(model.auxiliary_head) if hasattr(model, "auxiliary_head") else 0
    macs = count_macs(model, (1, 3, 512, 2048))
    print(f"| model | params | params without aux head | GMACs at 512x2048 |\n|---|---|---|---|")
    print(f"| UPerNet-{name} (ours) | {total / 1e6:.1f}M | {(total - aux) / 1e6:.1f}M | {macs / 1e9:.0f}G |")
    for label, params, flops in PUBLISHED:
        print(f"| {label} | {params / 1e6:.0f}M | | {flops / 1e9:.0f}G |")
    print("(mmseg's published 'FLOPs' count multiply-accumulates, as our GMACs do)\n")


def timed(fn, iterations: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def speed_table(task: SegmentationTask, iterations: int, train_batch: int) -> None:
    images = torch.rand(train_batch, 3, 512, 512)
    labels = torch.randint(0, ADE_CLASSES, (train_batch, 512, 512))
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-5)

    def train_step():
        losses = task.model.loss(task.normalize(images), data_samples(labels))
        sum(v for k, v in losses.items() if "loss" in k).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    task.train()
    train = timed(train_step, iterations)
    task.eval()
    with torch.no_grad():
        infer = timed(lambda: task(images[:1]), iterations)
    print(f"| 512x512 on CPU ({torch.get_num_threads()} threads) | seconds | images/s |\n|---|---|---|")
    print(f"| training step, batch {train_batch} (forward, backward, AdamW) | {train:.2f} | {train_batch / train:.3f} |")
    print(f"| inference, one image (whole) | {infer:.2f} | {1 / infer:.3f} |\n")


def memory_table(task: SegmentationTask) -> None:
    task.eval()
    before = rss_gib()
    with torch.no_grad():
        task(torch.rand(1, 3, 512, 2048))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| whole-image inference at 512x2048, CPU, float32 | GiB |\n|---|---|")
    print(f"| resident memory with the model loaded | {before:.2f} |")
    print(f"| peak resident memory of the process | {peak:.2f} |")
    print(f"| peak increase for the inference | {peak - before:.2f} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="gspn_t")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    task = build(args.backbone)
    memory_table(task)  # first, while the process's high-water mark is still the model's
    size_table(task, args.backbone.upper().replace("_", "-"))
    speed_table(task, args.iterations, args.train_batch)


if __name__ == "__main__":
    main()
