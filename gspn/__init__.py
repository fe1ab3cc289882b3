"""gspn: Generalized Spatial Propagation Networks (GSPN, GSPN-2) for vision."""

__version__ = "0.1.0"

# gspn.create_model and the others below import gspn.models on first use, so `import gspn` stays light.
MODELS_API = ("create_model", "list_models", "from_pretrained", "save_pretrained")


def __getattr__(name: str):
    if name in MODELS_API:
        from gspn import models

        return getattr(models, name)
    raise AttributeError(f"module 'gspn' has no attribute {name!r}")
