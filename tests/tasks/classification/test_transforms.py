"""The classification training pipeline (kornia): shapes, determinism per seed, and that every step obeys
its setting."""

import torch

from gspn.tasks.classification.transforms import train_pipeline
from tests.tasks.test_transforms import gradient_image

NO_AUGMENTATION = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, rand_augment_ops=0, rand_augment_magnitude=0,
                       random_erasing=0.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
IMAGENET_RECIPE = dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip=0.5, rand_augment_ops=2,
                       rand_augment_magnitude=27, random_erasing=0.25)


def test_training_pipeline_is_deterministic_per_seed_and_random_across_seeds():
    pipeline = train_pipeline(24, **IMAGENET_RECIPE)
    image = torch.rand(3, 37, 51)
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.append(pipeline(image))
    assert outputs[0].shape == (3, 24, 24)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_everything_off_is_a_plain_resize():
    image = gradient_image()
    torch.manual_seed(0)
    out = train_pipeline(40, **NO_AUGMENTATION)(image)
    assert torch.allclose(out, image, atol=1e-5)


def test_flip_follows_its_probability():
    image = gradient_image()
    always = train_pipeline(40, **{**NO_AUGMENTATION, "hflip": 1.0})
    assert torch.allclose(always(image), image.flip(-1), atol=1e-5)


def test_crop_scale_bounds_the_area():
    image = gradient_image(64, 64)
    crop = train_pipeline(16, **{**NO_AUGMENTATION, "crop_scale": (0.1, 0.1)})
    torch.manual_seed(0)
    out = crop(image)
    # a tenth of the area: the horizontal ramp covers about a third of its range
    assert 0.2 < (out[0, :, -1] - out[0, :, 0]).mean() < 0.45


def test_erasing_and_normalisation():
    image = gradient_image()
    erased = train_pipeline(40, **{**NO_AUGMENTATION, "random_erasing": 1.0})
    torch.manual_seed(0)
    assert (erased(image) == 0).sum() > 40  # a rectangle set to 0
    normalised = train_pipeline(40, **{**NO_AUGMENTATION, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    assert torch.allclose(normalised(image), (image - 0.5) / 0.25, atol=1e-4)


def test_rand_augment_changes_the_image():
    image = gradient_image()
    augment = train_pipeline(40, **{**NO_AUGMENTATION, "rand_augment_ops": 2, "rand_augment_magnitude": 27})
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        changed += not torch.allclose(augment(image), image, atol=1e-3)
    assert changed >= 3
