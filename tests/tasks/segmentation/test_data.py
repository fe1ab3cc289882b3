"""The embedded scenes, labelled folders with mmsegmentation's augmentation, and bad data."""

import numpy as np
import pytest
import torch
from PIL import Image

from gspn.cli import cli_main
from gspn.errors import ConfigError, DataError
from gspn.tasks.segmentation import ProceduralScenesDataModule, SegmentationFolderDataModule
from gspn.tasks.segmentation.folders import BadMaskError
from gspn.tasks.segmentation.procedural import CLASSES, CROSS_BAR, LONE_BAR, ProceduralScenes
from gspn.tasks.images import UnreadableImageError

from .conftest import tiny_config, write_config


def test_scenes_are_deterministic_per_seed_at_any_size():
    first, again, other = ProceduralScenes(4, (40, 72), seed=3), ProceduralScenes(4, (40, 72), seed=3), \
        ProceduralScenes(4, (40, 72), seed=4)
    image, labels = first[2]
    assert image.shape == (3, 40, 72) and labels.shape == (40, 72) and image.dtype == torch.float32
    assert torch.equal(image, again[2][0]) and torch.equal(labels, again[2][1])
    assert not torch.equal(image, other[2][0])
    assert 0 <= image.min() and image.max() <= 1


def test_scenes_hold_every_class_and_both_kinds_of_bar():
    counts = np.zeros(len(CLASSES))
    for _, labels in ProceduralScenes(32, 64, seed=0):
        counts += np.bincount(labels.flatten().numpy(), minlength=len(CLASSES))
    assert (counts > 0).all()
    assert counts[LONE_BAR] > 0.02 * counts.sum() and counts[CROSS_BAR] > 0.02 * counts.sum()


def write_pair(root, split, name, image_size=(48, 40), mask_size=None, labels=(0, 1, 2)):
    """An RGB image (width, height) and a label mask (mask_size, default the image's)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    width, height = image_size
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "images" / split / f"{name}.jpg")
    mask_width, mask_height = mask_size or image_size
    mask = rng.choice(np.array(labels, dtype=np.uint8), size=(mask_height, mask_width))
    Image.fromarray(mask, mode="L").save(root / "masks" / split / f"{name}.png")


def folder_module(root, **settings):
    return SegmentationFolderDataModule(str(root), class_names=["a", "b", "c"], crop_size=(32, 32),
                                        scale=(64, 32), batch_size=2, num_workers=0, **settings)


def test_folder_data_trains_through_the_command_with_mmseg_augmentation(tmp_path):
    for split in ("train", "val"):
        for i in range(2):
            write_pair(tmp_path / "data", split, f"{split}{i}", image_size=(48 + 7 * i, 40), labels=(0, 1, 2, 255))
    config = tiny_config(tmp_path / "run", fast_dev_run=True)
    config["data"] = {"class_path": "SegmentationFolderDataModule",
                      "init_args": {"root": str(tmp_path / "data"), "class_names": ["a", "b", "c"],
                                    "crop_size": [32, 32], "scale": [64, 32], "batch_size": 2, "num_workers": 0}}
    cli = cli_main(["fit", "--config", write_config(tmp_path / "folder.yaml", config)])
    assert cli.model.hparams.num_classes == 3 and len(cli.model.hparams.palette) == 3
    assert "val_mIoU" in cli.trainer.callback_metrics


def test_training_augmentation_is_a_function_of_the_torch_seed(tmp_path):
    write_pair(tmp_path, "train", "x", image_size=(50, 38))
    write_pair(tmp_path, "val", "x")
    module = folder_module(tmp_path)
    module.setup("fit")
    dataset = module.datasets["train"]
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(dataset[0])
    (image, labels), (same_image, same_labels), (other_image, _) = draws
    assert image.shape == (3, 32, 32) and labels.shape == (32, 32)
    assert torch.equal(image, same_image) and torch.equal(labels, same_labels)
    assert not torch.equal(image, other_image)
    assert set(labels.unique().tolist()) <= {0, 1, 2, 255}


@pytest.mark.parametrize("problem, error, message", [
    ("corrupt", UnreadableImageError, "images/train/bad.jpg"),
    ("size", BadMaskError, r"masks/train/bad.png is \(30, 20\).*images/train/bad.jpg is \(40, 48\)"),
    ("labels", BadMaskError, r"masks/train/bad.png has labels \[7\] outside \[0, 3\)"),
    ("missing", DataError, "without a mask.*bad.jpg"),
])
def test_bad_data_is_a_clear_error_before_training(problem, error, message, tmp_path):
    write_pair(tmp_path, "train", "good")
    write_pair(tmp_path, "val", "good")
    if problem == "size":
        write_pair(tmp_path, "train", "bad", mask_size=(20, 30))
    elif problem == "labels":
        write_pair(tmp_path, "train", "bad", labels=(0, 7, 255))
    else:
        write_pair(tmp_path, "train", "bad")
        if problem == "corrupt":
            (tmp_path / "images" / "train" / "bad.jpg").write_bytes(b"not a jpeg")
        else:
            (tmp_path / "masks" / "train" / "bad.png").unlink()
    with pytest.raises(error, match=message):
        folder_module(tmp_path).setup("fit")


def test_without_verification_the_failing_sample_names_its_file(tmp_path):
    write_pair(tmp_path, "train", "bad", labels=(0, 9))
    write_pair(tmp_path, "val", "good")
    module = folder_module(tmp_path, verify=False)
    module.setup("fit")
    with pytest.raises(BadMaskError, match="bad.png has labels"):
        module.datasets["train"][0]


def test_reduce_zero_label_ignores_zero_and_shifts_the_rest(tmp_path):
    write_pair(tmp_path, "val", "x", labels=(0, 1, 3))
    write_pair(tmp_path, "train", "x", labels=(0, 1, 3))
    module = folder_module(tmp_path, reduce_zero_label=True)
    module.setup("validate")
    _, labels = module.datasets["val"][0]
    assert set(labels.unique().tolist()) == {0, 2, 255}


def test_labels_above_255_survive_augmentation_and_collation(tmp_path):
    """Masks are 16-bit PNGs here: a cast to 8 bits would turn 260 into 4 and 511 into 255 (ignored)."""
    for split, name in (("train", "x"), ("train", "y"), ("val", "x")):
        write_pair(tmp_path, split, name, image_size=(40, 40))
        mask = np.full((40, 40), 260, dtype=np.uint16)
        mask[:, 20:] = 511
        Image.fromarray(mask).save(tmp_path / "masks" / split / f"{name}.png")
    module = SegmentationFolderDataModule(str(tmp_path), class_names=[f"c{i}" for i in range(600)],
                                          crop_size=(32, 32), scale=(64, 32), photometric=False, batch_size=2,
                                          num_workers=0)
    module.setup("fit")
    _, labels = next(iter(module.train_dataloader()))
    values = set(labels.unique().tolist())
    assert labels.dtype == torch.int64 and labels.shape == (2, 32, 32)
    assert values <= {260, 511, 255} and values & {260, 511}


def test_a_colour_mask_is_an_error_naming_the_file_but_a_palette_mask_is_labels(tmp_path):
    write_pair(tmp_path, "train", "good")
    write_pair(tmp_path, "val", "good")
    labels = np.array(Image.open(tmp_path / "masks" / "train" / "good.png"))
    palette_mask = Image.fromarray(labels, mode="P")
    palette_mask.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette_mask.save(tmp_path / "masks" / "val" / "good.png")
    module = folder_module(tmp_path)
    module.setup("validate")
    assert torch.equal(module.datasets["val"][0][1], torch.from_numpy(labels.astype(np.int64)))

    palette_mask.convert("RGB").save(tmp_path / "masks" / "train" / "good.png")
    with pytest.raises(DataError, match=r"mask .*masks/train/good.png is an RGB colour image"):
        module.setup("fit")


@pytest.mark.parametrize("eval_batch_size", [0, -2])
def test_an_eval_batch_size_below_one_is_an_error_naming_it(eval_batch_size, tmp_path):
    with pytest.raises(ConfigError, match=f"ProceduralScenesDataModule: eval_batch_size must be at least 1, "
                                          f"got {eval_batch_size}"):
        ProceduralScenesDataModule(eval_batch_size=eval_batch_size)
    with pytest.raises(ConfigError, match="SegmentationFolderDataModule: eval_batch_size"):
        folder_module(tmp_path, eval_batch_size=eval_batch_size)


def test_an_unreadable_image_to_predict_is_named_before_anything_runs(tmp_path):
    write_pair(tmp_path, "train", "x")
    write_pair(tmp_path, "val", "x")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "broken.png").write_bytes(b"not a png")
    module = folder_module(tmp_path, predict_root=str(tmp_path / "photos"))
    with pytest.raises(UnreadableImageError, match=r"1 unreadable image\(s\):\n  .*photos/broken.png: .*\n"
                                                   r"\(remove or repair them\)"):
        module.setup("predict")
    folder_module(tmp_path, predict_root=str(tmp_path / "photos"), verify=False).setup("predict")
