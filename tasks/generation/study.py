"""The many-token study: denoisers trained for the same wall-clock time, scored at the training size
and at twice it.

    python -m gspn.tasks.generation.study [--minutes 7.5] [--seeds 0 1] [--variants gspn attention ...]

Every variant is the many-token demo (tasks/generation/configs/many_tokens.yaml: SyntheticShapes
64 x 64, patch 2, 1,024 tokens) with one change to the denoiser, trained by `gspn fit` for `--minutes`
of training time per seed, `--jobs` runs at a time with `--threads` threads each (one run per core:
the GSPN denoiser and its attention control of the same seed train side by side, under the same
load). Each finished run is scored by `gspn validate` with the shapes judge
(tasks/generation/configs/shapes_classifier.yaml, 32 x 32; samples and real images are resized to it):
class accuracy (all classes and per class), FID and the real-versus-real FID of as many real images,
at the training size and, with fewer samples, at twice it. The tables go to the terminal and to
<root>/results.md; every run keeps its folder, so an interrupted study resumes where it stopped.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

from gspn.errors import ConfigError

from ..shapes import CLASSES

CONFIGS = Path(__file__).parent / "configs"
BASE = [CONFIGS / "demo.yaml", CONFIGS / "many_tokens.yaml"]
DENOISER = {"hidden": 96, "depth": 6, "compact": True}
IMAGE_SIZE = 64  # many_tokens.yaml's
VARIANTS = {  # name: (what it is, its change to the denoiser's arguments)
    "gspn": ("GSPN denoiser (compact, 2 proxy channels)", {}),
    "attention": ("attention control (sin-cos position)", {"mixer": "attention", "heads": 4}),
    "per_channel": ("GSPN-1 per-channel propagation", {"compact": False}),
    "dwconv7": ("depthwise 7 x 7 conv before the scan", {"kernel_size": 7}),
}  # the hybrid and the learned decay, measured at commit a284493, were dropped (docs/generation.md)
GRID_SAMPLES = {1: 2, 2: 1}  # per class, in the grid each scoring draws
JUDGE = "runs/generation/shapes_classifier/checkpoints/run-1/last.ckpt"


def gspn_command(subcommand: str, folder: Path, variant: str, *options: str) -> list[str]:
    """The `gspn` command line of the many-token demo with the variant's denoiser (written to
    <folder>/denoiser.yaml, the last config); `validate` writes its metrics to <folder>/metrics.json."""
    override = folder / "denoiser.yaml"
    override.write_text(yaml.safe_dump({"model": {"init_args": {"denoiser_args": {**DENOISER,
                                                                                  **VARIANTS[variant][1]}}}}))
    configs = [arg for path in [*BASE, override] for arg in ("--config", str(path))]
    arguments = [*configs, "--trainer.enable_progress_bar", "false", *options]
    if subcommand == "validate":
        return [sys.executable, "-m", "gspn.tasks.generation.study", "--validate-to", str(folder / "metrics.json"),
                *arguments]
    return [sys.executable, "-m", "gspn", subcommand, *arguments]


def run_logged(command: list[str], log: Path, threads: int) -> tuple[float, int]:
    """Run `command` with its output in `log`; (seconds, peak resident memory in MiB). A failure is an
    error naming the log."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[2:])[:60]}... failed (exit {process.returncode}); see {log}")
    return time.perf_counter() - began, usage.ru_maxrss // 1024


def train(root: Path, variant: str, seed: int, minutes: float, threads: int) -> dict:
    folder = root / f"{variant}-s{seed}"
    result_file = folder / "train.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    seconds = round(minutes * 60)
    command = gspn_command("fit", folder, variant, "--seed_everything", str(seed), "--trainer.default_root_dir", str(folder),
                           "--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                           "--model.init_args.grid_samples", "0")
    print(f"training {variant}, seed {seed}, for {minutes:g} minutes", flush=True)
    _, peak = run_logged(command, folder / "fit.log", threads)
    steps = torch.load(checkpoint(folder), map_location="cpu", weights_only=False)["global_step"]
    result = {"steps": steps, "seconds": seconds, "peak_mib": peak}
    result_file.write_text(json.dumps(result))
    return result


def checkpoint(folder: Path) -> Path:
    return folder / "checkpoints" / "run-1" / "last.ckpt"


def score(root: Path, variant: str, seed: int, scale: int, samples: int, judge: str, threads: int) -> dict:
    """`gspn validate` of the run's last checkpoint at `scale` times the training size: its metrics, the
    seconds it took and the grid of samples it drew (copied to <root>/grids)."""
    folder = root / f"{variant}-s{seed}"
    out = folder / f"score-{scale}x"
    result_file = out / "score.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    size = IMAGE_SIZE * scale
    command = gspn_command("validate", out, variant, "--ckpt_path", str(checkpoint(folder)),
                           "--trainer.default_root_dir", str(out), "--model.init_args.fid_classifier", judge,
                           "--model.init_args.classifier_size", "32", "--model.init_args.eval_samples", str(samples),
                           "--model.init_args.sample_size", str(size),
                           "--model.init_args.grid_samples", str(GRID_SAMPLES[scale]))
    print(f"scoring {variant}, seed {seed}, at {size} x {size}: {samples} samples", flush=True)
    seconds, _ = run_logged(command, out / "validate.log", threads)
    metrics = json.loads((out / "metrics.json").read_text())
    grids = sorted(out.rglob("samples/*.png"))
    if grids:
        (root / "grids").mkdir(exist_ok=True)
        (root / "grids" / f"{variant}-s{seed}-{size}px.png").write_bytes(grids[-1].read_bytes())
    result = {**metrics, "seconds": seconds}
    result_file.write_text(json.dumps(result))
    return result


def validate_to_file(path: str, arguments: list[str]) -> None:
    """Run `gspn validate` with `arguments` in this process and write its metrics to `path` (JSON)."""
    from gspn.cli import cli_main

    metrics = cli_main(["validate", *arguments]).trainer.callback_metrics
    Path(path).write_text(json.dumps({key.removeprefix("val_"): float(value) for key, value in metrics.items()}))


def spread(values: list[float], percent: bool = True) -> str:
    scale = 100 if percent else 1
    text = f"{statistics.mean(values) * scale:.1f}"
    if len(values) > 1:
        text += f" ({', '.join(f'{v * scale:.1f}' for v in values)})"
    return text


def tables(variants: list[str], seeds: list[int], results: dict) -> str:
    """Markdown: the main table and the per-class accuracy at the training size, seeds averaged
    (each seed in brackets)."""
    main = ["| variant | steps reached | s / step | peak memory (MiB) | class acc 1x (%) | FID 1x (real vs real) "
            "| class acc 2x (%) | FID 2x | sampling 1x / 2x (s) |", "|" + " --- |" * 9]
    per_class = ["| variant | " + " | ".join(CLASSES) + " |", "|" + " --- |" * (len(CLASSES) + 1)]
    for variant in variants:
        runs = [results[variant, seed] for seed in seeds]
        steps = [run["train"]["steps"] for run in runs]
        step_time = [run["train"]["seconds"] / max(run["train"]["steps"], 1) for run in runs]
        main.append(" | ".join([
            f"| {VARIANTS[variant][0]}", ", ".join(f"{s:,}" for s in steps), f"{statistics.mean(step_time):.2f}",
            f"{max(run['train']['peak_mib'] for run in runs):,}",
            spread([run["1x"]["class_acc"] for run in runs]),
            f"{spread([run['1x']['fid'] for run in runs], percent=False)} "
            f"({statistics.mean(run['1x']['fid_real_vs_real'] for run in runs):.1f})",
            spread([run["2x"]["class_acc"] for run in runs]) if "2x" in runs[0] else "",
            spread([run["2x"]["fid"] for run in runs], percent=False) if "2x" in runs[0] else "",
            f"{statistics.mean(run['1x']['seconds'] for run in runs):.0f} / "
            + (f"{statistics.mean(run['2x']['seconds'] for run in runs):.0f} |" if "2x" in runs[0] else "|")]))
        per_class.append(f"| {VARIANTS[variant][0]} | " + " | ".join(
            f"{statistics.mean(run['1x'].get(f'class_acc/{name}', float('nan')) for run in runs) * 100:.0f}"
            for name in CLASSES) + " |")
    return "\n".join(main) + "\n\nPer-class accuracy at the training size (%, seeds averaged):\n\n" + "\n".join(per_class)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--minutes", type=float, default=7.5, help="training time of every run")
    parser.add_argument("--samples", type=int, default=64, help="scored samples at the training size")
    parser.add_argument("--samples-2x", type=int, default=16, help="scored samples at twice the training size")
    parser.add_argument("--variants-2x", nargs="*", default=["gspn", "attention"], choices=list(VARIANTS),
                        help="the variants also scored at twice the training size")
    parser.add_argument("--judge", default=JUDGE, help="classification checkpoint of shapes_classifier.yaml")
    parser.add_argument("--root", type=Path, default=Path("runs/generation/study"))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads of each run")
    args = parser.parse_args(argv)
    if not Path(args.judge).is_file():
        raise ConfigError(f"--judge: {args.judge} is not a file; train the judge first with "
                          f"gspn fit --config tasks/generation/configs/shapes_classifier.yaml")
    if args.minutes <= 0 or args.samples < 2 or args.samples_2x < 2:
        raise ConfigError(f"--minutes must be positive and --samples, --samples-2x at least 2, "
                          f"got {args.minutes}, {args.samples}, {args.samples_2x}")
    runs = [(variant, seed) for seed in args.seeds for variant in args.variants]
    results = {run: {} for run in runs}
    with ThreadPoolExecutor(args.jobs) as pool:
        for run, result in zip(runs, pool.map(lambda r: train(args.root, *r, args.minutes, args.threads), runs)):
            results[run]["train"] = result
        for run, result in zip(runs, pool.map(lambda r: score(args.root, *r, 1, args.samples, args.judge,
                                                                  args.threads), runs)):
            results[run]["1x"] = result
        # attention's samples at 2x cost several times GSPN's: they start first
        twice = sorted((run for run in runs if run[0] in args.variants_2x), key=lambda run: run[0] != "attention")
        for run, result in zip(twice, pool.map(lambda r: score(args.root, *r, 2, args.samples_2x, args.judge,
                                                               args.threads), twice)):
            results[run]["2x"] = result
    report = tables(args.variants, args.seeds, results)
    (args.root / "results.md").write_text(report + "\n")
    (args.root / "results.json").write_text(json.dumps({f"{v}-s{s}": r for (v, s), r in results.items()}, indent=1))
    print(report)
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["--validate-to"]:
        validate_to_file(sys.argv[2], sys.argv[3:])
    else:
        main()
