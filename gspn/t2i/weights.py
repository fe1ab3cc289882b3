"""Save and load the GSPN modules of a converted UNet as one safetensors file (design brief §5.8), or as a
folder to share: model.safetensors (that file), config.json (its header) and a model card, README.md.

The file holds only the GSPN modules' tensors, keyed "<attn1 path>.<parameter>", e.g.
`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.weight`. Its header (the `gspn_config`
JSON of gspn.models.hub) holds the gspn version, each module's settings and the base model's fingerprint:
the self-attention layers with their widths, and a sample of the cross-attention (`attn2`) weights.

The sample is compared with a 1% tolerance rather than hashed: a pipeline loaded in fp16 or bf16 rounds
the weights, and no rounding before a hash makes fp32, fp16 and bf16 copies agree on every value (double
rounding and fp16's smaller range flip a few), while 1% covers bf16's 0.4% rounding and still tells
apart two models of the same shape.
"""

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from gspn import __version__
from gspn.errors import CheckpointError, ConfigError
from gspn.models.hub import read_safetensors, write_safetensors

from .convert import Attention, build_modules, gspn_modules, install, is_converted, layer_dims, unet_of
from .modules import GSPNSelfAttention

KIND = "gspn.t2i"
WEIGHTS = "model.safetensors"  # the weights file of a folder
SAMPLES = 8  # attn2.to_k weights kept per cross-attention layer, evenly spaced in the flattened tensor
TOLERANCE = 1e-2  # relative, per sampled weight (bf16 rounds by up to 2^-9)
SHOWN = 5  # differences listed in an error message


def save(pipe_or_unet, path, dtype: torch.dtype | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """Write the GSPN modules of a converted pipeline or UNet to `path`: a safetensors file, or, for a path
    without the .safetensors suffix, a folder of model.safetensors, config.json and a model card (ready for
    `hf upload <owner>/<name> <folder>`). Returns the file or folder.

    Args:
        dtype: of the stored tensors, e.g. torch.float16 to ship half the size; None keeps the modules' own
        metrics: a folder's card lists them (e.g. the distillation's validation losses)
    """
    unet = unet_of(pipe_or_unet)
    modules = gspn_modules(unet)
    if not modules:
        raise ConfigError(f"save {path}: the UNet is not converted; call gspn.t2i.convert or gspn.t2i.load first")
    state = {key: tensor if dtype is None else tensor.to(dtype) for key, tensor in stored_tensors(modules).items()}
    config = {"kind": KIND, "gspn_version": __version__, "base": fingerprint(unet),
              "modules": {name: module.settings() for name, module in modules.items()}}
    path = Path(path)
    if path.suffix == ".safetensors":
        write_safetensors(state, path, config)
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_safetensors(state, path / WEIGHTS, config)
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (path / "README.md").write_text(card(config, sum(t.numel() for t in state.values()), metrics or {}))
    return path


def card(config: dict, num_params: int, metrics: Mapping[str, float]) -> str:
    """The model card of a folder: what the modules are, for which base UNet, how to load them."""
    from gspn.models.hub import require

    header = require("huggingface_hub").ModelCardData(
        library_name="gspn", tags=["gspn", "text-to-image", "stable-diffusion", "distillation"]).to_yaml()
    settings = {json.dumps({k: v for k, v in m.items() if k != "dim"}, sort_keys=True)
                for m in config["modules"].values()}
    lines = [f"---\n{header}\n---", "# GSPN modules for a Stable Diffusion UNet", "",
             f"{len(config['modules'])} GSPN modules ({num_params / 1e6:.2f}M parameters) in place of the "
             f"self-attention (attn1) layers of a diffusers UNet, saved by gspn {config['gspn_version']}; "
             f"settings: {'; '.join(sorted(settings))}.", "",
             "## Use", "", "```python", "import gspn.t2i as t2i",
             'pipe = StableDiffusionPipeline.from_pretrained("<base pipeline>")  # or StableDiffusionXLPipeline',
             't2i.load(pipe, "<this folder>")  # converts, loads, and refuses another base model', "```", "",
             "## Base model", "", "Self-attention layers and their channels (config.json also holds samples of the "
             "cross-attention weights that `load` compares):", "",
             *(f"- {name}: {dim}" for name, dim in config["base"]["layers"].items())]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |",
                  *(f"| {name} | {value:.6g} |" for name, value in metrics.items())]
    return "\n".join(lines) + "\n"


def load(pipe_or_unet, file, strict_base: bool = True, dtype: torch.dtype | None = None):
    """Load GSPN weights saved by `save` (a file or a folder) into a pipeline or UNet; returns the UNet.

    An unconverted UNet is converted with the file's settings (modules in `dtype`, None for float32); a
    converted one must have the same settings. The file must have been made for this base model: the same
    self-attention layers and, with `strict_base`, the same cross-attention weights (up to fp16 / bf16
    rounding); pass strict_base=False for a fine-tune of the model the file was made for.
    """
    unet = unet_of(pipe_or_unet)
    path = Path(file)
    if path.is_dir():
        path = path / WEIGHTS
    state, config = read_safetensors(path, "gspn.t2i.load")
    if config is None or config.get("kind") != KIND:
        raise CheckpointError(f"{path}: not a gspn.t2i weights file (its header has no {KIND} settings); such files "
                              "are written by gspn.t2i.save")
    base = fingerprint(unet)
    check_base(path, config["base"], base, strict_base)
    converted = is_converted(unet)
    if converted:
        modules = gspn_modules(unet)
        check_settings(path, config["modules"], modules)
    else:  # in the UNet's module order (the header's JSON is sorted)
        modules = build_modules(unet, {name: config["modules"][name] for name in base["layers"]}, dtype)
    check_keys(path, state, stored_tensors(modules))
    for name, module in modules.items():
        module.load_state_dict({key: state[f"{name}.{key}"] for key in module.state_dict()})
    if not converted:
        install(unet, modules)
    return unet


def stored_tensors(modules: Mapping[str, GSPNSelfAttention]) -> dict[str, torch.Tensor]:
    """The modules' tensors under the keys of the file: "<layer path>.<parameter>"."""
    return {f"{name}.{key}": tensor for name, module in modules.items() for key, tensor in module.state_dict().items()}


def fingerprint(unet) -> dict:
    """What identifies the base model: its self-attention layers with their widths, and a few weights of
    each cross-attention layer's `to_k` (see the module's docstring)."""
    samples = {}
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and module.is_cross_attention:
            weight = module.to_k.weight.detach().flatten()
            positions = torch.linspace(0, weight.numel() - 1, SAMPLES).round().long().to(weight.device)
            samples[name] = weight[positions].float().tolist()
    return {"layers": layer_dims(unet), "attn2_samples": samples}


def check_base(path: Path, stored: dict, current: dict, strict: bool) -> None:
    """Refuse a file made for another base model: other self-attention layers, or (`strict`) other weights."""
    layers, ours = stored["layers"], current["layers"]
    differences = [f"{name} missing in the UNet" for name in layers if name not in ours]
    differences += [f"{name} not in the file" for name in ours if name not in layers]
    differences += [f"{name} has {layers[name]} channels in the file, {ours[name]} in the UNet"
                    for name in layers if name in ours and layers[name] != ours[name]]
    if differences:
        raise CheckpointError(f"{path}: made for another base model; its self-attention layers differ: "
                              f"{'; '.join(differences[:SHOWN])}{more(differences)}")
    if not strict:
        return
    samples, ours = stored["attn2_samples"], current["attn2_samples"]
    differing = [name for name in samples.keys() | ours.keys()
                 if name not in samples or name not in ours or not all(
                     math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=1e-6) for a, b in zip(samples[name], ours[name]))]
    if differing:
        raise CheckpointError(f"{path}: made for another base model; the cross-attention weights differ from those it "
                              f"was saved with, at {', '.join(sorted(differing)[:SHOWN])}{more(differing)}. For a "
                              "fine-tune of the model the file was made for, pass strict_base=False")


def check_settings(path: Path, stored: Mapping[str, dict], modules: Mapping[str, GSPNSelfAttention]) -> None:
    """Refuse a file whose module settings differ from those of the converted UNet's modules."""
    differences = [f"{name} {key}={value!r} in the file, {module.settings().get(key)!r} in the UNet"
                   for name, module in modules.items() for key, value in stored[name].items()
                   if module.settings().get(key) != value]
    if differences:
        raise CheckpointError(f"{path}: made with other settings than the UNet's GSPN modules: "
                              f"{'; '.join(differences[:SHOWN])}{more(differences)}. Load it into an unconverted "
                              "pipeline (it converts with the file's settings) or convert with the same settings")


def check_keys(path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Refuse a file whose tensors are not exactly those of the modules, by name and shape."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in the module"
              for key, tensor in expected.items() if key in state and state[key].shape != tensor.shape]
    problems = [f"{label}: {', '.join(items[:SHOWN])}{more(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes", shapes)) if items]
    if problems:
        raise CheckpointError(f"{path}: does not fit the GSPN modules; {'; '.join(problems)}")


def more(items: list) -> str:
    """The tail of a list shortened to SHOWN items in an error message."""
    return f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
