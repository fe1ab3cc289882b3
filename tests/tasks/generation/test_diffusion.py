"""The diffusion wiring: schedulers, guidance and label dropout, against exact expectations."""

import pytest
import torch
from torch import nn

from gspn.tasks.generation.diffusion import (
    diffusion_loss,
    drop_labels,
    guided_prediction,
    sample,
    sampling_scheduler,
    training_scheduler,
)


class Oracle(nn.Module):
    """Returns the true noise of x_t for a known clean x0: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""

    def __init__(self, x0: torch.Tensor, scheduler):
        super().__init__()
        self.x0 = x0
        self.alphas_cumprod = scheduler.alphas_cumprod

    def forward(self, x, t, y):
        abar = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.x0) / (1 - abar).sqrt()


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("sampler, steps", [("ddim", 20), ("dpm_solver", 20), ("ddpm", 50)])
def test_an_oracle_denoiser_recovers_the_clean_input(sampler, steps, beta_schedule):
    torch.manual_seed(0)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    training = training_scheduler(beta_schedule=beta_schedule)
    scheduler = sampling_scheduler(training, sampler)
    result = sample(Oracle(x0, training), scheduler, torch.randn_like(x0), torch.tensor([0, 1]), steps=steps,
                    generator=torch.Generator().manual_seed(0))
    assert torch.allclose(result, x0, atol=1e-3)


def test_the_loss_of_an_oracle_is_zero_and_of_a_wrong_model_is_not():
    torch.manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8)
    scheduler = training_scheduler()
    assert diffusion_loss(Oracle(x0, scheduler), scheduler, x0, None) < 1e-8
    assert diffusion_loss(Oracle(x0 + 0.1, scheduler), scheduler, x0, None) > 1e-4


class TwoHeaded(nn.Module):
    """Different outputs for the null class (label 9) and real classes."""

    def forward(self, x, t, y):
        return torch.where((y == 9).view(-1, 1, 1, 1), -x, 2 * x + y.view(-1, 1, 1, 1))


def test_guidance_scale_one_is_the_conditional_prediction_and_others_extrapolate():
    model, x, t, y = TwoHeaded(), torch.randn(3, 3, 4, 4), torch.tensor([5, 5, 5]), torch.tensor([0, 1, 2])
    conditional = model(x, t, y)
    assert torch.equal(guided_prediction(model, x, t, y, 1.0, 9), conditional)
    unconditional = model(x, t, torch.full_like(y, 9))
    assert torch.allclose(guided_prediction(model, x, t, y, 3.0, 9), unconditional + 3 * (conditional - unconditional))
    assert torch.allclose(guided_prediction(model, x, t, y, 0.0, 9), unconditional)


def test_label_dropout_uses_the_null_class_at_the_configured_rate():
    torch.manual_seed(0)
    labels = torch.randint(0, 8, (100_000,))
    dropped = drop_labels(labels, 0.1, 8)
    changed = dropped != labels
    assert (dropped[changed] == 8).all()
    assert changed.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(drop_labels(labels, 0.0, 8), labels)


def test_v_prediction_targets_the_velocity():
    torch.manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8)
    scheduler = training_scheduler(prediction_type="v_prediction")

    class VelocityOracle(Oracle):
        def forward(self, x, t, y):
            abar = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
            return abar.sqrt() * super().forward(x, t, y) - (1 - abar).sqrt() * self.x0

    assert diffusion_loss(VelocityOracle(x0, scheduler), scheduler, x0, None) < 1e-8


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampling_scheduler(training_scheduler(), "euler")


@pytest.mark.parametrize("argument, value", [("beta_schedule", "cosine"), ("prediction_type", "x0")])
def test_unknown_training_schedule_is_a_clear_error(argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be one of .*got '{value}'"):
        training_scheduler(**{argument: value})


@pytest.mark.parametrize("gamma, floor", [(5.0, None), (None, 1.0), (5.0, 1.0)])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_snr_weighting_matches_a_hand_computed_loss(prediction_type, gamma, floor):
    x0 = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    scheduler = training_scheduler(prediction_type=prediction_type)
    zero = lambda x, t, y: torch.zeros_like(x)  # noqa: E731  the error is then the target itself
    # the same draws as the loss makes from this generator: the noise, then the timesteps
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, 1000, (64,), generator=generator)
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = noise if prediction_type == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    snr = (abar / (1 - abar)).flatten().tolist()
    # the implied x0 weight, SNR clamped to [floor, gamma], per sample in plain Python
    x0_weight = [min(max(s, floor or 0.0), gamma or float("inf")) for s in snr]
    weight = torch.tensor([w / (s if prediction_type == "epsilon" else s + 1) for w, s in zip(x0_weight, snr)])
    expected = (target.pow(2).flatten(1).mean(1) * weight).mean()
    weighted = diffusion_loss(zero, scheduler, x0, None, torch.Generator().manual_seed(0), snr_gamma=gamma,
                              snr_floor=floor)
    plain = diffusion_loss(zero, scheduler, x0, None, torch.Generator().manual_seed(0))
    assert weighted == pytest.approx(expected.item(), rel=1e-5)
    assert plain == pytest.approx(target.pow(2).mean().item(), rel=1e-5)
