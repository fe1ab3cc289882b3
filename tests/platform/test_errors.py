"""A user-fixable error raised after the task is built (here in the data module's setup) is one line
from the real `gspn` command, with exit status 1 and no traceback."""

from PIL import Image

from tests.cli.conftest import tiny_config
from tests.config_files import write_config

from .conftest import run_gspn


def test_a_missing_validation_folder_is_one_line_naming_it(tmp_path):
    root = tmp_path / "data"
    for name in ("circle", "square"):
        (root / "train" / name).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (32, 32), (40 * index, 80, 120)).save(root / "train" / name / f"{index}.png")
    config = tiny_config(tmp_path / "run", logger=False)
    config["data"] = {"class_path": "ImageFolderDataModule",
                      "init_args": {"root": str(root), "image_size": 32, "batch_size": 2, "num_workers": 0}}
    result = run_gspn("fit", "--config", write_config(tmp_path / "config.yaml", config), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-2].startswith("error: ") and str(root / "val") in lines[-2], lines[-2:]
    assert lines[-1] == "(the traceback: --debug)"
