"""Named model constructors by family ("backbone", "denoiser"): `register_model`,
`create_model(name, family=..., pretrained=..., **overrides)`, `list_models(pattern, family)`."""

import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from gspn.errors import ConfigError

FAMILIES = ("backbone", "denoiser")
_MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, family: str = "backbone"):
    """Register a constructor under its function name in `family` (`@register_model` or
    `@register_model(family="denoiser")`); it takes keyword overrides of its preset."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if fn.__name__ in _MODELS:
            raise ValueError(f"model {fn.__name__!r} is already registered")
        _MODELS[fn.__name__] = (family, fn)
        return fn
    return add(fn) if fn is not None else add


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """The registered names matching the glob `pattern`, of one family or of all."""
    return sorted(name for name, (kind, _) in _MODELS.items()
                  if fnmatch.fnmatch(name, pattern) and family in (None, kind))


def create_model(name: str, family: str | None = None, *, pretrained: str | Path | None = None,
                 **overrides) -> nn.Module:
    """Build the preset `name`, which must be of `family` when one is given; keyword arguments replace
    the preset's values (e.g. num_classes). `pretrained`: weights to load, every tensor checked (a
    weights folder, a .safetensors file, `hf-hub:owner/name`, or a checkpoint: see load_checkpoint); a
    folder of another architecture is refused. The model records its preset name as `architecture`."""
    kind, constructor = _MODELS.get(name, (None, None))
    if constructor is None or family not in (None, kind):
        what = f"{family} " if family else ""
        known = f" (a {kind}, not a {family})" if constructor is not None else ""
        raise ConfigError(f"unknown {what}model {name!r}{known}; available: {', '.join(list_models(family=family))}")
    model = constructor(**overrides)
    model.architecture = name
    if pretrained is not None:
        from .pretrained import load_pretrained  # it imports the model classes, which import this module

        load_pretrained(model, pretrained, name)
    return model
