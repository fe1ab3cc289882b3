from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from gspn.errors import DataError
from gspn.tasks.classification.data import ImageFolderDataModule, SyntheticShapesDataModule
from gspn.tasks.images import UnreadableImageError
from gspn.tasks.shapes import CLASSES


def test_synthetic_data_module():
    data = SyntheticShapesDataModule(num_train=16, num_val=8, num_test=8, image_size=32, batch_size=4)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.shape == (4,)
    assert data.num_classes == len(CLASSES)
    assert len(data.val_dataloader().dataset) == 8
    val_images = {tuple(data.datasets["val"][i][0].flatten()[:8].tolist()) for i in range(8)}
    train_images = {tuple(data.datasets["train"][i][0].flatten()[:8].tolist()) for i in range(16)}
    assert not val_images & train_images


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for name in ("cat", "dog", "emu"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (30 + 7 * i, 41, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_data_module(image_folder):
    data = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=4, num_workers=0)
    assert data.classes == ["cat", "dog", "emu"] and data.num_classes == 3
    data.setup("fit")
    assert len(data.datasets["train"]) == 9 and len(data.datasets["val"]) == 6
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32)
    val_images, val_labels = next(iter(data.val_dataloader()))
    assert val_images.shape == (4, 3, 32, 32)
    assert val_labels.tolist() == [0, 0, 1, 1]


def test_image_folder_without_train_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="train"):
        ImageFolderDataModule(str(tmp_path))


def test_training_order_and_augmentation_are_functions_of_seed_and_epoch(image_folder):
    data = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=3, num_workers=0)
    data.setup("fit")

    def epoch(number: int) -> list[torch.Tensor]:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(number)
        torch.manual_seed(number + 100)  # the global generator must not matter
        return [images for images, _ in loader]

    first, again, second = epoch(1), epoch(1), epoch(2)
    assert len(first) == 3
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_training_samples_are_split_over_ranks(image_folder):
    data = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=2, num_workers=0)
    data.setup("fit")
    keys = []
    for rank in (0, 1):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        keys.append([index for index, _, _ in data.train_dataloader().sampler])
    assert len(keys[0]) == len(keys[1]) == 4
    assert not set(keys[0]) & set(keys[1])


def test_an_empty_class_folder_is_an_error_naming_it(image_folder):
    (image_folder / "train" / "fox").mkdir()
    with pytest.raises(DataError, match="without images: fox"):
        ImageFolderDataModule(str(image_folder))


@pytest.fixture
def corrupt_folder(image_folder):
    (image_folder / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return image_folder


def test_unreadable_images_are_named_by_the_scan(corrupt_folder):
    data = ImageFolderDataModule(str(corrupt_folder), image_size=32, num_workers=0, verify_images="error")
    with pytest.raises(UnreadableImageError, match=r"1 unreadable image\(s\):\n  .*dog/broken.jpg"):
        data.setup("fit")


def test_unreadable_images_can_be_skipped_with_a_warning(corrupt_folder):
    data = ImageFolderDataModule(str(corrupt_folder), image_size=32, num_workers=0, verify_images="skip")
    with pytest.warns(UserWarning, match="skipping unreadable image .*broken.jpg"):
        data.setup("fit")
    assert len(data.datasets["train"]) == 9


def test_without_the_scan_an_unreadable_image_fails_naming_the_file(corrupt_folder):
    data = ImageFolderDataModule(str(corrupt_folder), image_size=32, num_workers=0)
    data.setup("fit")
    broken = next(i for i, (path, _) in enumerate(data.datasets["train"].samples) if path.name == "broken.jpg")
    with pytest.raises(UnreadableImageError, match="cannot read image .*broken.jpg"):
        data.datasets["train"][broken]


def test_predict_root_is_classified_in_file_order(image_folder):
    data = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=4, num_workers=0,
                                 predict_root=str(image_folder / "val" / "dog"))
    data.setup("predict")
    images, paths = next(iter(data.predict_dataloader()))
    assert images.shape == (2, 3, 32, 32)
    assert [Path(p).name for p in paths] == ["0.jpg", "1.jpg"]
    with pytest.raises(DataError, match="predict_root: .*nowhere is not a folder"):
        ImageFolderDataModule(str(image_folder), predict_root=str(image_folder / "nowhere")).setup("predict")


def test_a_resumed_epoch_skips_the_batches_already_trained(image_folder):
    data = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=2, num_workers=0)
    data.setup("fit")
    whole = [key for key in data.train_dataloader().sampler]
    data.load_state_dict({"epoch": 0, "batches": 3})
    sampler = data.train_dataloader().sampler
    assert len(sampler) == len(whole)
    assert list(sampler) == whole[6:]
    assert list(sampler) == whole  # only the first pass through the resumed epoch is shortened


def test_the_predict_folder_follows_the_verify_images_policy(corrupt_folder):
    predict_root = corrupt_folder / "train" / "dog"
    data = ImageFolderDataModule(str(corrupt_folder), image_size=32, num_workers=0, verify_images="error",
                                 predict_root=str(predict_root))
    with pytest.raises(UnreadableImageError, match=r"1 unreadable image\(s\):\n  .*dog/broken.jpg"):
        data.setup("predict")
    data = ImageFolderDataModule(str(corrupt_folder), image_size=32, num_workers=0, verify_images="skip",
                                 predict_root=str(predict_root))
    with pytest.warns(UserWarning, match="skipping unreadable image .*broken.jpg"):
        data.setup("predict")
    assert [path.name for path in data.datasets["predict"].paths] == ["0.jpg", "1.jpg", "2.jpg"]


def test_an_image_folder_export_records_the_normalisation_its_pipelines_use(image_folder, monkeypatch):
    from gspn.tasks.export import preprocessing

    monkeypatch.setattr(ImageFolderDataModule, "mean", (0.0, 0.0, 0.0))
    monkeypatch.setattr(ImageFolderDataModule, "std", (2.0, 2.0, 2.0))
    data = ImageFolderDataModule(str(image_folder), image_size=32, crop_pct=0.5, num_workers=0)
    data.setup("validate")
    image = Image.open(image_folder / "val" / "cat" / "0.jpg").convert("RGB").resize((64, 64))
    raw = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.datasets["val"].transform(raw), raw[:, 16:48, 16:48] / 2, atol=1e-5)
    assert preprocessing({}, data) == {"mean": [0.0, 0.0, 0.0], "std": [2.0, 2.0, 2.0], "input_size": [3, 32, 32],
                                       "crop_pct": 0.5, "class_names": ["cat", "dog", "emu"], "num_classes": 3}
