"""Swap the self-attention layers (`attn1`) of a Stable Diffusion UNet for GSPN modules, and back.

`convert` replaces each `attn1` module on its parent block, not its attention processor: diffusers calls
that reset processors (set_attn_processor, IP-Adapter loading, xformers) leave a plain module alone,
whereas a processor-based swap would be silently undone (design brief §3). A forward pre-hook on every
Transformer2DModel tells the GSPN modules inside it the (H, W) of its input map, so any aspect ratio
works. The original modules wait in a side table on the UNet, so `detach` and `attach` switch between
the two without copying weights.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from gspn.errors import ConfigError

from .modules import GSPNSelfAttention

try:
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
except ImportError as error:
    raise ImportError(f"gspn.t2i needs diffusers ({error}); install it with pip install 'gspn[gen]'") from error

VARIANTS = ("gspn1", "gspn2")
INITS = ("random", "teacher")
TABLE = "_gspn_conversion"  # the UNet attribute that holds its Conversion


@dataclass
class Conversion:
    """The side table of a converted UNet: the original `attn1` modules and their GSPN replacements, by path."""

    originals: dict[str, nn.Module]
    modules: dict[str, GSPNSelfAttention]


def unet_of(pipe_or_unet) -> UNet2DConditionModel:
    """The UNet of a diffusers pipeline (its `.unet`), or the UNet itself."""
    if isinstance(pipe_or_unet, UNet2DConditionModel):
        return pipe_or_unet
    unet = getattr(pipe_or_unet, "unet", None)
    if not isinstance(unet, UNet2DConditionModel):
        raise TypeError(f"gspn.t2i: expected a diffusers pipeline whose .unet is a UNet2DConditionModel, or such a "
                        f"UNet, got {type(pipe_or_unet).__name__}")
    return unet


def convert(pipe_or_unet, variant: str = "gspn2", chunk: int | None | Mapping[str, int | None] = None,
            proxy: int | None = None, init: str = "random", dtype: torch.dtype | None = None) -> UNet2DConditionModel:
    """Replace every `attn1` of the UNet by a GSPNSelfAttention; returns the UNet, changed in place.

    Args:
        pipe_or_unet: a Stable Diffusion / SD-XL pipeline or its UNet2DConditionModel
        variant: "gspn1" (per-channel) or "gspn2" (compact)
        chunk: None for global scans, k to restart every k steps (the official T2I models use 4), or a dict
            {module path prefix: k}, e.g. {"down_blocks.0": 4, "up_blocks.1": 4}: the longest prefix matching a
            layer wins ("" matches every layer), layers matched by none scan globally
        proxy: the proxy width of every module; None for dim // 8
        init: "random" (the official recipe) or "teacher": `to_out` copied from the original `attn1` and the
            merge zeroed, so each new layer starts by returning the teacher's `to_out` bias
        dtype: of the new modules' parameters; None for float32 (they compute in their own dtype, so they
            can train in float32 inside a bf16 UNet). They go to the device of the layers they replace.
    """
    unet = unet_of(pipe_or_unet)
    if variant not in VARIANTS:
        raise ConfigError(f"convert: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if init not in INITS:
        raise ConfigError(f"convert: init must be one of {', '.join(INITS)}, got {init!r}")
    if proxy is not None and proxy < 1:
        raise ConfigError(f"convert: proxy must be None or at least 1, got {proxy}")
    if is_converted(unet):
        raise ConfigError("convert: the UNet is already converted; to convert with other settings, start from a "
                          "fresh copy of the pipeline (gspn.t2i.detach gives back its original attention)")
    dims = layer_dims(unet)
    chunks = chunk_of_each(chunk, list(dims))
    settings = {name: {"dim": dim, "variant": variant, "chunk": chunks[name], "proxy": proxy}
                for name, dim in dims.items()}
    modules = build_modules(unet, settings, dtype)
    if init == "teacher":
        for name, module in modules.items():
            copy_teacher(module, unet.get_submodule(name), name)
    install(unet, modules)
    return unet


def self_attention_names(pipe_or_unet) -> list[str]:
    """The module paths of the UNet's self-attention layers: its diffusers Attention modules that are not
    cross-attention, all named `...attn1`. On a converted UNet: the converted layers, attached or not."""
    unet = unet_of(pipe_or_unet)
    conversion = getattr(unet, TABLE, None)
    if conversion is not None:
        return list(conversion.modules)
    names = [name for name, module in unet.named_modules()
             if isinstance(module, Attention) and not module.is_cross_attention]
    others = [name for name in names if name.rpartition(".")[2] != "attn1"]
    if others:
        raise ConfigError(f"gspn.t2i: self-attention layers not named attn1: {others}; only the transformer blocks "
                          "of Stable Diffusion-like UNets are supported")
    return names


def layer_dims(unet: UNet2DConditionModel) -> dict[str, int]:
    """The channels of each self-attention layer, by path, in module order."""
    conversion = getattr(unet, TABLE, None)
    if conversion is not None:
        return {name: module.dim for name, module in conversion.modules.items()}
    names = self_attention_names(unet)
    if not names:
        raise ConfigError(f"gspn.t2i: the {type(unet).__name__} has no self-attention layer (attn1) to convert")
    return {name: unet.get_submodule(name).to_q.in_features for name in names}


def chunk_of_each(chunk, names: list[str]) -> dict[str, int | None]:
    """The chunk of each layer: `chunk` itself, or the value of the longest matching prefix of a dict."""
    if not isinstance(chunk, Mapping):
        return dict.fromkeys(names, chunk)

    def matches(prefix: str, name: str) -> bool:
        return prefix == "" or name == prefix or name.startswith(prefix + ".")

    unused = [prefix for prefix in chunk if not any(matches(prefix, name) for name in names)]
    if unused:
        raise ConfigError(f"convert: chunk keys {unused} match no self-attention layer; expected module path "
                          f"prefixes such as 'down_blocks.0' or 'mid_block' (the layers: {names})")
    chunks = {}
    for name in names:
        prefixes = [prefix for prefix in chunk if matches(prefix, name)]
        chunks[name] = chunk[max(prefixes, key=len)] if prefixes else None
    return chunks


def build_modules(unet: UNet2DConditionModel, settings: Mapping[str, dict],
                  dtype: torch.dtype | None) -> dict[str, GSPNSelfAttention]:
    """New GSPN modules, one per layer path with its constructor's keyword arguments, on that layer's device."""
    modules = {}
    for name, kwargs in settings.items():
        device = unet.get_submodule(name).to_q.weight.device
        modules[name] = GSPNSelfAttention(**kwargs).to(device=device, dtype=dtype or torch.float32)
    return modules


def copy_teacher(module: GSPNSelfAttention, original: nn.Module, name: str) -> None:
    """Start `module` at its teacher's output projection with the propagation switched off (merge = 0)."""
    teacher = original.to_out[0]
    if teacher.weight.shape != module.to_out.weight.shape:
        raise ConfigError(f"convert: init='teacher' needs {name}.to_out.0 of shape "
                          f"{tuple(module.to_out.weight.shape)}, got {tuple(teacher.weight.shape)}; use init='random'")
    with torch.no_grad():
        module.to_out.weight.copy_(teacher.weight)
        module.to_out.bias.copy_(teacher.bias if teacher.bias is not None else torch.zeros_like(module.to_out.bias))
        module.merge.zero_()


def install(unet: UNet2DConditionModel, modules: dict[str, GSPNSelfAttention]) -> None:
    """Put `modules` in place of the layers at their paths, keep the originals aside and add the size hooks."""
    originals = {name: unet.get_submodule(name) for name in modules}
    transformers = [(name, module) for name, module in unet.named_modules() if isinstance(module, Transformer2DModel)]
    for name in modules:
        if not any(name.startswith(prefix + ".") for prefix, _ in transformers):
            raise ConfigError(f"gspn.t2i: {name} is not inside a Transformer2DModel, which tells it the map size")
    for _, transformer in transformers:
        transformer.register_forward_pre_hook(set_map_size, with_kwargs=True)
    swap_in(unet, modules)
    setattr(unet, TABLE, Conversion(originals, dict(modules)))


def set_map_size(transformer: Transformer2DModel, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of a Transformer2DModel: give the GSPN modules inside it the (H, W) of its input."""
    hidden_states = args[0] if args else kwargs["hidden_states"]
    for module in transformer.modules():  # found at call time, so deep copies of the UNet keep working
        if isinstance(module, GSPNSelfAttention):
            module.hw = tuple(hidden_states.shape[-2:])


def detach(pipe_or_unet) -> None:
    """Put the original attention modules back (the UNet computes exactly as before `convert`); the GSPN
    modules wait aside for `attach`. The originals follow the device and dtype the UNet has now."""
    unet = unet_of(pipe_or_unet)
    swap_in(unet, conversion_of(unet, "detach").originals, follow_dtype=True)


def attach(pipe_or_unet) -> None:
    """Put the GSPN modules in place of the original attention modules again (after `detach`)."""
    unet = unet_of(pipe_or_unet)
    swap_in(unet, conversion_of(unet, "attach").modules)


def swap_in(unet: UNet2DConditionModel, incoming: Mapping[str, nn.Module], follow_dtype: bool = False) -> None:
    """Set each module of `incoming` at its path, on the device (and with `follow_dtype` the dtype) of the
    block around it: the UNet may have been moved or cast while the module was aside."""
    for name, module in incoming.items():
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name)
        around = next(tensor for key, tensor in parent.named_parameters() if not key.startswith(child + "."))
        module.to(device=around.device, dtype=around.dtype if follow_dtype else None)
        setattr(parent, child, module)


def gspn_modules(pipe_or_unet) -> dict[str, GSPNSelfAttention]:
    """The GSPN modules by the path of the layer they replace, attached or not; empty if not converted."""
    conversion = getattr(unet_of(pipe_or_unet), TABLE, None)
    return dict(conversion.modules) if conversion is not None else {}


def is_converted(pipe_or_unet) -> bool:
    """Whether `convert` or `load` has swapped GSPN modules into the UNet (attached or detached now)."""
    return getattr(unet_of(pipe_or_unet), TABLE, None) is not None


def conversion_of(unet: UNet2DConditionModel, caller: str) -> Conversion:
    """The UNet's side table; `caller` names the function in the error when it is not converted."""
    conversion = getattr(unet, TABLE, None)
    if conversion is None:
        raise ConfigError(f"{caller}: the UNet is not converted; call gspn.t2i.convert or gspn.t2i.load first")
    return conversion
