"""Text-to-image: GSPN in place of the self-attention of Stable Diffusion and SD-XL UNets (diffusers).

    import gspn.t2i as t2i
    t2i.convert(pipe, variant="gspn2", chunk=4)   # untrained swap, for distillation
    t2i.save(pipe, "gspn2.safetensors")           # the GSPN modules only, settings in the header
    t2i.load(other_pipe, "gspn2.safetensors")     # converts with the file's settings, checks the base model
    t2i.detach(pipe); t2i.attach(pipe)            # A/B against the original attention, same pipeline

Needs diffusers (pip install 'gspn[gen]'); the rest of gspn works without it.
"""

from .convert import attach, convert, detach, gspn_modules, is_converted, self_attention_names, unet_of
from .modules import GSPNSelfAttention
from .weights import load, save

HIGHRES = ("upscale", "generate_highres")

__all__ = ["GSPNSelfAttention", "attach", "convert", "detach", "gspn_modules", "is_converted", "load", "save",
           "self_attention_names", "unet_of", *HIGHRES]


def __getattr__(name: str):
    # gspn/t2i/highres.py is imported on first use
    if name in HIGHRES:
        from . import highres

        return getattr(highres, name)
    raise AttributeError(f"module 'gspn.t2i' has no attribute {name!r}")
