"""The demo's judge of generated shapes: the class read back from each file name, accuracy by role and class."""

import pytest
import torch
from PIL import Image

from gspn.errors import ConfigError
from gspn.tasks.outputs import safe_name
from gspn.tasks.shapes import CLASSES
from gspn.tasks.text2image.score import class_of_file, judge_folder


class AlwaysRing(torch.nn.Module):
    """A judge that calls every image a ring, and records the normalised images it saw."""

    def forward(self, images):
        self.seen = images
        return torch.nn.functional.one_hot(torch.full((len(images),), CLASSES.index("ring")), len(CLASSES)).float()


def write(folder, index, prompt, value=255):
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (value, value, value)).save(folder / f"{index:05d}_{safe_name(prompt)}.png")


def test_accuracy_per_class_from_the_prompts_in_the_file_names(tmp_path):
    for index, prompt in enumerate(["a ring", "a circle outline", "a cross", "two discs side by side"]):
        write(tmp_path, index, prompt)
    judge = AlwaysRing()
    score = judge_folder(judge, tmp_path)
    assert score["count"] == 4 and score["accuracy"] == 0.5
    assert score["per_class"] == {"side_by_side": 0.0, "ring": 1.0, "cross": 0.0}
    # resized to the judge's 32 pixels and normalised as SyntheticShapes classifiers are: white is (1 - 0.5) / 0.25
    assert judge.seen.shape == (4, 3, 32, 32) and torch.allclose(judge.seen, torch.full_like(judge.seen, 2.0))


def test_a_prompt_that_names_no_class_is_an_error(tmp_path):
    write(tmp_path, 0, "a dog on the snowy floor")
    with pytest.raises(ConfigError, match="no caption of CaptionedShapesData"):
        class_of_file(next(tmp_path.iterdir()))
    with pytest.raises(ConfigError, match="no images to judge"):
        judge_folder(AlwaysRing(), tmp_path / "empty")
