"""Importing mmsegmentation on demand, with a stand-in for mmcv's compiled ops when they are missing.

mmsegmentation 1.2.2 needs mmcv < 2.2, which PyPI ships compiled for few platforms; the pure
`mmcv-lite` wheel lacks the compiled module `mmcv._ext`, which mmseg imports (through mmcv.ops) for
layers this project never runs. `import_mmseg()` puts a stand-in module in its place only when the
real one cannot be found, so an installation with full mmcv is used untouched. Every op of the
stand-in raises a clear error when called. Nothing here imports mmseg until `import_mmseg()` runs.
"""

import importlib.util
import sys
import types


class MissingCompiledOp(RuntimeError):
    pass


def _missing_op(name: str):
    def op(*args, **kwargs):
        raise MissingCompiledOp(
            f"mmcv op {name!r} needs mmcv's compiled extension (mmcv._ext), which this installation lacks "
            "(mmcv-lite). GSPN segmentation never calls it; a config that does needs full mmcv "
            "(pip install mmcv==2.1.0, built for your torch and CUDA).")
    op.__name__ = name
    return op


def _stand_in_getattr(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing_op(name)


def install_ext_stand_in() -> bool:
    """Put the stand-in at `mmcv._ext` if mmcv has no compiled module; True if it did."""
    if "mmcv._ext" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
        return False
    stand_in = types.ModuleType("mmcv._ext", "Stand-in for mmcv's compiled ops (see gspn.tasks.segmentation)")
    stand_in.__getattr__ = _stand_in_getattr
    sys.modules["mmcv._ext"] = stand_in
    return True


def import_mmseg():
    """Import mmseg's models (installing the stand-in if needed), register the GSPN backbone in its
    model registry and return that registry."""
    try:
        install_ext_stand_in()
        import mmseg.models  # noqa: F401  (fills the registry)
        from mmseg.registry import MODELS
    except ImportError as error:
        raise ImportError(f"gspn segmentation needs mmsegmentation ({error}); install it with "
                          "pip install 'gspn[seg]'") from error
    from .backbone import GSPNSegBackbone

    if GSPNSegBackbone.registry_name not in MODELS.module_dict:
        MODELS.register_module(name=GSPNSegBackbone.registry_name, module=GSPNSegBackbone)
    return MODELS
