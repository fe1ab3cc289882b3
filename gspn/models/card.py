"""The model card (README.md) of a weights folder: what the network is, how to load it, its
preprocessing and, for weights from a training run, the task, the run's metrics and its config."""

import json

from gspn import __version__

from .arguments import jsonable
from .hub import require

KINDS = {"backbone": "A GSPN backbone", "denoiser": "A GSPN diffusion denoiser", "task": "The network of a gspn task"}


def model_card(config: dict, num_params: int, training: dict | None = None) -> str:
    """The card's text. `training` (from `gspn export`): task, checkpoint, weights, progress, metrics
    ({name: value}) and config (the run's, as YAML), each optional."""
    family, architecture = config["family"], config["architecture"]
    header = require("huggingface_hub").ModelCardData(library_name="gspn", tags=["gspn", family]).to_yaml()
    lines = [f"---\n{header}\n---", f"# {architecture}", "",
             f"{KINDS.get(family, family)} (`{architecture}`, family `{family}`), {num_params / 1e6:.2f}M "
             f"parameters, saved by gspn {__version__}.", "",
             *([f"Loading it builds the task `{config['task']}`, which needs gspn's training extras and the "
                "task's own (e.g. gspn[seg]).", ""] if family == "task" else []),
             "## Use", "", "```python", "from gspn.models import from_pretrained",
             'model = from_pretrained("hf-hub:<owner>/<name>")  # or the path of this folder',
             "preprocessing = model.pretrained_cfg", "```", "", "## Preprocessing", ""]
    preprocessing = config.get("pretrained_cfg") or {}
    lines += [f"- {key}: {json.dumps(value)}" for key, value in preprocessing.items()] or ["Not recorded."]
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- {key}: {training[key]}" for key in ("task", "checkpoint", "weights", "progress")
                  if training.get(key)]
        if training.get("metrics"):
            lines += ["", "### Metrics", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {name} | {value:.6g} |" for name, value in training["metrics"].items()]
        if training.get("config"):
            lines += ["", "### Training config", "", "The task's hyper-parameters, as saved in the checkpoint:", "",
                      "```yaml", yaml_text(training["config"]).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def yaml_text(values: dict) -> str:
    import yaml  # pyyaml comes with huggingface_hub; `import gspn` does not need it

    return yaml.safe_dump(jsonable(values), sort_keys=False)
