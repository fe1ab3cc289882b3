"""Benchmarks and measurements, one module each, run as `python -m gspn.benchmarks.<name>`:

    propagate     the propagation op's backends: forward and backward times, bandwidth and its share of
                  the copy bandwidth (`--device cuda` on a GPU); `--plan` prints the CUDA kernels' launch
                  plans and their modelled bandwidth on an H100 (cuda_model), no GPU needed
    mixer         the GSPN mixer against SDPA attention and a depthwise conv, gspn_t / gspn2_t training
                  steps and their profile (docs/mixer.md)
    generation    parameters and GMACs of the denoiser presets next to DiT's, and the demo denoiser's
                  CPU throughput (docs/generation.md)
    segmentation  size, GMACs, speed and memory of UPerNet-GSPN (docs/segmentation.md; `seg` extra)
    text2image    Stable Diffusion's self-attention (SDPA) against GSPN-1 and GSPN-2 per layer, whole-UNet
                  FLOPs of SD-1.5 and SD-XL up to 16K with the Amdahl bound of the swap, whole-UNet forward
                  times (docs/text2image.md; `t2i` extra)
    small_data    the small-data classification recipe on three small real data sets shipped in PyPI
                  packages, against scikit-learn's SVC and logistic regression (`baselines` extra)

`common` holds what they share: the timer (`median_seconds`), the table printer (`print_table`) and
the peak-memory reader (`peak_memory`). `cuda_model` is the H100 bandwidth model of the CUDA kernels'
launch plans that `propagate --plan` prints (the plans themselves come from gspn.ops.launch_plan, the
runtime planner).

A benchmark of a task sits above gspn.tasks (docs/design.md §2) and imports it inside its functions,
so importing this package, `common`, `cuda_model`, `propagate` or `mixer` needs no Lightning.
"""
