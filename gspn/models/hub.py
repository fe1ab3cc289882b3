"""The files of a weights folder and the Hugging Face Hub: safetensors in and out, and `hf-hub:owner/name`
downloads with errors that say why. huggingface_hub and safetensors are imported only when used
(`pip install 'gspn[hub]'`), so `import gspn` needs torch alone."""

import importlib
import json
from pathlib import Path

from torch import Tensor

from gspn.errors import CheckpointError

HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_METADATA = "gspn_config"  # the config.json text, also kept in the weights file's header


def require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"weights folders and the Hub need {module.split('.')[0]} ({error}); install them with "
                          "pip install 'gspn[hub]'") from error


def write_safetensors(state: dict[str, Tensor], path: Path, config: dict) -> None:
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    metadata = {"format": "pt", CONFIG_METADATA: json.dumps(config, sort_keys=True)}
    require("safetensors.torch").save_file(tensors, str(path), metadata=metadata)


def read_safetensors(path: Path, label: str) -> tuple[dict[str, Tensor], dict | None]:
    """The tensors of a .safetensors file and the config its header carries (None when it has none)."""
    safetensors = require("safetensors")
    if not path.is_file():
        raise CheckpointError(f"{label}: no such weights file ({path})")
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            config = (file.metadata() or {}).get(CONFIG_METADATA)
            state = {key: file.get_tensor(key) for key in file.keys()}
    except (safetensors.SafetensorError, OSError) as error:
        raise CheckpointError(f"{label}: cannot read {path.name}: {error} (truncated or not a safetensors file)") \
            from error
    return state, json.loads(config) if config else None


def download(repo_id: str) -> Path:
    """The folder holding config.json and model.safetensors of the Hub repository `repo_id` (from the
    local Hugging Face cache when they are there)."""
    hub = require("huggingface_hub")
    from huggingface_hub import constants, errors

    label = f"{HUB_PREFIX}{repo_id}"
    try:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            path = Path(hub.hf_hub_download(repo_id, name, library_name="gspn"))
    except errors.LocalEntryNotFoundError as error:
        where = f"the local Hugging Face cache ({constants.HF_HUB_CACHE})"
        if constants.HF_HUB_OFFLINE:
            raise CheckpointError(f"{label}: not in {where}, and HF_HUB_OFFLINE=1 forbids downloading it; "
                                  "unset HF_HUB_OFFLINE to download it, or give a local weights folder") from error
        raise CheckpointError(f"{label}: the Hub cannot be reached and the model is not in {where}") from error
    except (errors.RepositoryNotFoundError, errors.GatedRepoError) as error:
        raise CheckpointError(f"{label}: no such model repository on the Hub, or one you may not read "
                              "(a private or gated one needs `hf auth login`)") from error
    except errors.EntryNotFoundError as error:
        raise CheckpointError(f"{label}: the repository has no {name}; it is not a gspn weights folder") from error
    except errors.HFValidationError as error:
        raise CheckpointError(f"{label}: not a repository id; expected {HUB_PREFIX}owner/name ({error})") from error
    return path.parent
