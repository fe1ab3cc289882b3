"""Pictures of a run (tasks/figures.py): drawn right, written as PNG files where a person looks, and
handed to TensorBoard; classification's confusion matrix and misclassified images every validation."""

import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gspn.cli import cli_main
from gspn.tasks.figures import confusion_image, image_grid
from tests.cli.conftest import tiny_config
from tests.config_files import write_config


def test_the_confusion_image_shades_each_true_class_by_its_share():
    matrix = torch.tensor([[4, 0, 0], [1, 3, 0], [0, 0, 0]])  # class 2 has no images
    image = confusion_image(matrix, cell=2)
    assert image.shape == (3, 6, 6)
    blue, white, grey = torch.tensor([0.03, 0.19, 0.42]), torch.ones(3), torch.full((3,), 0.75)
    cell = lambda r, c: image[:, 2 * r, 2 * c]  # noqa: E731
    assert torch.allclose(cell(0, 0), blue) and torch.allclose(cell(0, 1), white)
    assert torch.allclose(cell(1, 0), white + 0.25 * (blue - white)) and torch.allclose(cell(1, 1), white + 0.75 * (blue - white))
    assert torch.allclose(cell(2, 2), grey)


def test_the_grid_fills_rows_and_leaves_unused_cells_black():
    images = torch.stack([torch.full((3, 2, 3), float(i + 1)) for i in range(3)])
    grid = image_grid(images, 2)
    assert grid.shape == (3, 4, 6)
    assert grid[0, 0, 0] == 1 and grid[0, 0, 3] == 2 and grid[0, 2, 0] == 3 and grid[0, 2, 3] == 0


def test_classification_draws_its_confusion_matrix_and_mistakes_for_every_logger(tmp_path):
    config = tiny_config(tmp_path / "run", max_epochs=2, num_sanity_val_steps=1)
    cli_main(["fit", "--config", write_config(tmp_path / "board.yaml", config)])
    logs = tmp_path / "run" / "lightning_logs" / "version_0"
    for name in ("confusion_matrix", "misclassified"):
        assert sorted(path.name for path in (logs / name).iterdir()) == ["step_0000004.png", "step_0000008.png"]
    assert Image.open(logs / "confusion_matrix" / "step_0000008.png").size == (8 * 16, 8 * 16)  # 8 classes
    events = EventAccumulator(str(logs), size_guidance={"images": 0}).Reload()
    assert {"confusion_matrix", "misclassified"} <= set(events.Tags()["images"])

    config = tiny_config(tmp_path / "plain", logger=False)
    cli_main(["fit", "--config", write_config(tmp_path / "plain.yaml", config)])
    assert (tmp_path / "plain" / "confusion_matrix" / "step_0000004.png").is_file()
