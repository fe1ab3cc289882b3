"""Writing a test's config dict as the YAML file the `gspn` command reads."""

from pathlib import Path

import yaml


def write_config(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)
