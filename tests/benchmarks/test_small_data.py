"""gspn.benchmarks.small_data: a small real data set, written as the class folders a user would have,
trained by the real `gspn fit` with the documented small-data recipe and its augmentation defaults,
must come near a classical baseline on the same split."""

import numpy as np
import pytest
import yaml

from gspn.benchmarks.small_data import (ImageSet, classical_baselines, digits, small_data_config, split,
                                        train_gspn, write_folders)

pytest.importorskip("sklearn")


def test_the_split_is_stratified_fixed_and_written_as_class_folders(tmp_path):
    data = digits()
    train, val = split(data)
    again, _ = split(data)
    assert np.array_equal(train, again) and not set(train) & set(val)
    assert len(val) == 360 and np.bincount(data.labels[val]).min() >= 35
    root = write_folders(data, train[:20], val[:10], tmp_path)
    assert sum(1 for _ in (root / "train").rglob("*.png")) == 20
    assert sorted(p.name for p in (root / "val").iterdir()) == sorted({data.classes[i] for i in data.labels[val[:10]]})


def test_the_baselines_score_the_validation_split():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    images = rng.normal(labels[:, None, None] * 0.5, 0.1, (80, 4, 4))  # two separable classes
    scores = classical_baselines(ImageSet("blobs", images, labels, ["a", "b"]), np.arange(0, 80, 2),
                                 np.arange(1, 80, 2))
    assert scores == {"svc": 1.0, "logreg": 1.0}
    scrambled = classical_baselines(ImageSet("noise", images, rng.permutation(labels), ["a", "b"]),
                                    np.arange(0, 80, 2), np.arange(1, 80, 2))
    assert scrambled["svc"] < 0.8


def test_the_recipe_leaves_augmentation_to_the_data_module_defaults():
    recipe = yaml.safe_load(small_data_config().read_text())
    augmentation = {"crop_scale", "crop_ratio", "hflip", "rand_augment_ops", "rand_augment_magnitude",
                    "random_erasing", "crop_pct"}
    assert not augmentation & set(recipe["data"]["init_args"])


@pytest.mark.slow
def test_the_documented_defaults_come_near_the_svc_on_a_slice_of_digits(tmp_path):
    """A third of the digits' training split, half their validation split, 10 epochs: the documented
    recipe reaches within 10 points of the RBF SVC (measured: 93.3% against 97.8%; the ImageNet
    augmentation that used to be the default reached 37.2%)."""
    data = digits()
    train, val = split(data)
    train, val = train[::3], val[::2]
    svc = classical_baselines(data, train, val)["svc"]
    root = write_folders(data, train, val, tmp_path / "digits")
    top1 = train_gspn(small_data_config(), root, tmp_path / "run",
                      ["--trainer.max_epochs", "10", "--trainer.logger", "false"])
    assert top1 >= svc - 0.10, (top1, svc)
