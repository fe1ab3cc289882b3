"""Objects named by a dotted path in a config ("torch.optim.AdamW", "mypackage.MyBackbone")."""

import importlib


def import_object(path: str):
    """The object that `path` names, or None when it names no module attribute that can be imported."""
    module, _, name = path.rpartition(".")
    if not module:
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
