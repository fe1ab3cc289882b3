import pytest
import torch

from gspn.tasks.classification.mixup import MixupCutmix, smooth_one_hot

NUM_CLASSES = 10


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 12, generator=generator), torch.tensor([0, 1, 2, 3, 4, 5])


def test_smooth_one_hot():
    targets = smooth_one_hot(torch.tensor([2, 0]), 4, smoothing=0.2)
    assert torch.allclose(targets[0], torch.tensor([0.05, 0.05, 0.85, 0.05]))
    assert torch.allclose(targets.sum(1), torch.ones(2))


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0), (0.0, 0.0)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_mass_is_conserved(batch, mixup_alpha, cutmix_alpha, smoothing):
    mix = MixupCutmix(NUM_CLASSES, mixup_alpha, cutmix_alpha, label_smoothing=smoothing)
    for seed in range(5):
        torch.manual_seed(seed)
        images, targets = mix(*batch)
        assert images.shape == batch[0].shape
        assert targets.shape == (6, NUM_CLASSES)
        assert torch.allclose(targets.sum(1), torch.ones(6))
        assert (targets >= 0).all()


def test_mixup_blends_with_the_reversed_batch(batch):
    images, labels = batch
    torch.manual_seed(0)
    mixed, targets = MixupCutmix(NUM_CLASSES, mixup_alpha=0.8)(images, labels)
    lam = targets[0, labels[0]].item()
    assert 0 < lam < 1
    assert torch.allclose(targets[0, labels[-1]], torch.tensor(1 - lam))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_label_weight(batch):
    images, labels = batch
    for seed in range(10):
        torch.manual_seed(seed)
        mixed, targets = MixupCutmix(NUM_CLASSES, cutmix_alpha=1.0)(images, labels)
        from_partner = (mixed == images.flip(0)).all(1) & (mixed != images).any(1)
        assert ((mixed == images).all(1) | from_partner).all()
        pasted = from_partner[0].float().mean()
        assert torch.allclose(targets[0, labels[-1]], pasted)
        assert torch.allclose(targets[0, labels[0]], 1 - pasted)


def test_probability_zero_leaves_the_batch(batch):
    images, labels = batch
    mixed, targets = MixupCutmix(NUM_CLASSES, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0)(images, labels)
    assert torch.equal(mixed, images)
    assert torch.equal(targets, smooth_one_hot(labels, NUM_CLASSES))


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.8, 0.0), (0.0, 1.0)])
def test_bf16_batches_mix_under_a_bf16_default_dtype(batch, mixup_alpha, cutmix_alpha):
    """What `bf16-true` precision does: bf16 inputs, and bf16 as torch's default dtype in the step."""
    images, labels = batch[0].bfloat16(), batch[1]
    mix = MixupCutmix(NUM_CLASSES, mixup_alpha, cutmix_alpha, label_smoothing=0.1)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        torch.manual_seed(0)
        mixed, targets = mix(images, labels)
    finally:
        torch.set_default_dtype(default)
    assert mixed.dtype == torch.bfloat16 and mixed.shape == images.shape
    assert targets.dtype == torch.bfloat16 and torch.allclose(targets.float().sum(1), torch.ones(6), atol=1e-2)
