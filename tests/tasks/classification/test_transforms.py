import pytest
import torch
from PIL import Image

from gspn.tasks.classification.transforms import (
    RAND_AUGMENT_OPS,
    Compose,
    Normalize,
    RandAugment,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCenterCrop,
    affine,
    equalize,
    pil_to_tensor,
    translate_x,
)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 40, 57, generator=torch.Generator().manual_seed(0))


def test_pil_to_tensor_keeps_layout_and_range():
    pixels = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    tensor = pil_to_tensor(Image.fromarray(pixels.numpy()))
    assert tensor.shape == (3, 5, 7)
    assert torch.allclose(tensor, pixels.permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("transform, shape", [(RandomResizedCrop(24), (3, 24, 24)),
                                              (ResizeCenterCrop(32), (3, 32, 32)),
                                              (RandAugment(), (3, 40, 57)),
                                              (RandomErasing(1.0), (3, 40, 57))])
def test_output_shapes(transform, shape, image):
    assert transform(image).shape == shape


def test_same_seed_same_output(image):
    pipeline = Compose(RandomResizedCrop(24), RandomHorizontalFlip(), RandAugment(), Normalize(), RandomErasing(0.5))
    outputs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outputs.append(pipeline(image))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_flip_flips(image):
    assert torch.equal(RandomHorizontalFlip(p=1.0)(image), image.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(image), image)


def test_random_resized_crop_stays_in_range(image):
    crop = RandomResizedCrop(16, scale=(0.5, 1.0))
    for _ in range(50):
        top, left, height, width = crop.crop_box(40, 57)
        assert 0 <= top and top + height <= 40 and 0 <= left and left + width <= 57
        assert 0.5 * 40 * 57 * 0.8 <= height * width <= 40 * 57


def test_erasing_erases_one_rectangle(image):
    torch.manual_seed(0)
    erased = RandomErasing(p=1.0)(image)
    changed = (erased != image).any(0)
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    assert changed.sum() > 0
    box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all() and changed.sum() == box.numel()
    assert torch.equal(RandomErasing(p=0.0)(image), image)


def test_centre_crop_is_centred():
    image = torch.rand(3, 40, 48)
    # crop_pct 0.8: the short side 40 is resized to 32 / 0.8 = 40, so nothing is resampled.
    assert torch.allclose(ResizeCenterCrop(32, crop_pct=0.8)(image), image[:, 4:36, 8:40], atol=1e-6)


def test_normalize():
    image = torch.full((3, 2, 2), 0.5)
    assert torch.allclose(Normalize(mean=(0.5, 0.25, 0.0), std=(1.0, 0.5, 0.5))(image)[:, 0, 0],
                          torch.tensor([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("name", list(RAND_AUGMENT_OPS))
def test_rand_augment_ops_keep_shape_and_range(name, image):
    for strength in (-1.0, 0.5, 1.0):
        out = RAND_AUGMENT_OPS[name](image, strength)
        assert out.shape == image.shape
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", ["identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
                                  "brightness", "contrast", "color", "sharpness", "solarize"])
def test_rand_augment_ops_at_zero_strength_are_identity(name, image):
    assert torch.allclose(RAND_AUGMENT_OPS[name](image, 0.0), image, atol=1e-5)


def test_translate_moves_content_and_fills():
    image = torch.zeros(1, 8, 20)
    image[:, :, 12] = 1
    moved = translate_x(image, 1.0)  # 0.45 * 20 = 9 pixels to the left
    assert torch.allclose(moved[:, :, 3], torch.ones(1, 8), atol=1e-6)
    assert torch.allclose(moved[:, :, 11:], torch.full((1, 8, 9), 0.5), atol=1e-6)
    assert torch.allclose(affine(image, [[1, 0, 0], [0, 1, 0]]), image, atol=1e-6)


def test_equalize_spreads_a_narrow_histogram():
    image = 0.4 + 0.1 * torch.rand(3, 16, 16)
    out = equalize(image, 1.0)
    assert out.min() == 0 and out.max() == 1


def test_rand_augment_rejects_unknown_ops():
    with pytest.raises(ValueError, match="unknown ops"):
        RandAugment(ops=["rotate", "warp"])
