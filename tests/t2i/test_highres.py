"""gspn.t2i.highres on the tiny offline SD and SD-XL pipelines: sizes, conv restoration, every argument's effect,
determinism, step counts, input errors and the staged generate_highres."""

import copy

import pytest
import torch
from PIL import Image
from torch import nn

from gspn.errors import ConfigError
from gspn.t2i.highres import _cosine, dilated_convs, generate_highres, upscale

# small and fast: a 16 px image upscaled to 32 px (a 16 x 16 latent), three steps
FAST = dict(scale=2, strength=1.0, steps=3, progress=False)


def noise_image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(seed))
    return Image.fromarray((pixels * 255).to(torch.uint8).numpy())


def run(pipe, image=None, seed: int = 0, **kwargs):
    """upscale with a fixed generator; returns (image, latents)."""
    args = {**FAST, "generator": torch.Generator().manual_seed(seed), **kwargs}
    return upscale(pipe, noise_image(16, 16) if image is None else image, "a cat", return_latents=True, **args)


def conv_state(module: nn.Module) -> dict:
    return {name: (m.dilation, m.padding, list(m._reversed_padding_repeated_twice))
            for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}


class CountCalls:
    """A forward pre-hook counting the calls of a module; `check` (optional) runs on each."""

    def __init__(self, module: nn.Module, check=None):
        self.calls, self.check = 0, check
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.check:
            self.check(self.calls)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models spend their time in thread overhead: one thread is several times faster on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(sd_pipe_once):
    """One tiny SD pipeline shared by this module's read-only tests."""
    return copy.deepcopy(sd_pipe_once)


@pytest.fixture(scope="module")
def baseline(pipe):
    return run(pipe)[1]


@pytest.mark.parametrize("size", [(16, 16), (16, 24)], ids=["square", "non-square"])
@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
def test_output_size(sdxl, size, sd_pipe, sdxl_pipe):
    """16 px -> 32 px, 16 x 24 -> 32 x 48 (height x width); PIL sizes are (width, height)."""
    height, width = size
    image, latents = run(sdxl_pipe if sdxl else sd_pipe, noise_image(height, width), strength=0.67)
    assert image.size == (2 * width, 2 * height)
    assert latents.shape == (1, 4, height, width)  # the tiny VAE halves the side
    assert torch.isfinite(latents).all()


@pytest.mark.slow
@pytest.mark.parametrize("sdxl, size", [(False, (64, 64)), (True, (64, 96))], ids=["sd-64", "sdxl-64x96"])
def test_output_size_128(sdxl, size, sd_pipe, sdxl_pipe):
    """64 px -> 128 px and 64 x 96 -> 128 x 192, one step without guidance (4096-token attention is slow on a CPU)."""
    height, width = size
    image, latents = run(sdxl_pipe if sdxl else sd_pipe, noise_image(height, width), strength=0.5, steps=2,
                         guidance_scale=1.0)
    assert image.size == (2 * width, 2 * height)
    assert torch.isfinite(latents).all()


def test_tensor_image_and_fractional_scale(pipe):
    image, latents = run(pipe, torch.rand(3, 16, 16), scale=1.5, strength=0.5, steps=2)
    assert image.size == (24, 24)
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler"])
def test_other_schedulers(sd_pipe, scheduler):
    import diffusers

    sd_pipe.scheduler = getattr(diffusers, scheduler).from_config(sd_pipe.scheduler.config)
    image, latents = run(sd_pipe, noise_image(16, 16, seed=1).convert("L"), strength=0.5, steps=6)
    assert image.size == (32, 32) and torch.isfinite(latents).all()


def test_weights_fade_from_one_to_zero():
    """c1, c2, c3: the anchor and the dilated pass dominate at the first kept step, vanish at the last."""
    for power in (1.0, 3.0):
        weights = [_cosine(i / 4, power) for i in range(5)]
        assert weights[0] == 1 and weights[-1] == pytest.approx(0, abs=1e-12)
        assert weights == sorted(weights, reverse=True)


def test_convs_restored(pipe):
    before = conv_state(pipe.unet)
    run(pipe, strength=0.5, steps=2)
    assert conv_state(pipe.unet) == before


def test_convs_dilated_on_second_pass_and_restored_after_an_error(pipe):
    before = conv_state(pipe.unet)
    seen = []

    def fail_on_second_pass(calls):
        seen.append(conv_state(pipe.unet))
        if calls == 2:
            raise RuntimeError("injected")

    counter = CountCalls(pipe.unet, fail_on_second_pass)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            run(pipe)
    finally:
        counter.handle.remove()
    assert conv_state(pipe.unet) == before
    assert seen[0] == before
    for name, (dilation, padding, _) in seen[1].items():
        kernel = dict(pipe.unet.named_modules())[name].kernel_size
        assert dilation == (2, 2)
        assert padding == tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))  # size kept


def test_dilated_convs_keep_size_and_padding_mode():
    conv = nn.Conv2d(2, 2, 3, stride=2, padding=1, padding_mode="reflect")
    x = torch.randn(1, 2, 9, 9)
    with dilated_convs(conv, 3):
        assert conv(x).shape == conv.__class__(2, 2, 3, stride=2, padding=1)(x).shape
        assert conv.padding == (3, 3) and conv._reversed_padding_repeated_twice == (3, 3, 3, 3)
    assert conv.dilation == (1, 1) and conv.padding == (1, 1) and conv._reversed_padding_repeated_twice == (1,) * 4


def test_deterministic(pipe, baseline):
    assert torch.equal(run(pipe)[1], baseline)
    assert not torch.equal(run(pipe, seed=1)[1], baseline)


@pytest.mark.parametrize("change", [
    dict(sigma=2.0), dict(cosine_scale_1=1.0), dict(cosine_scale_2=3.0), dict(cosine_scale_3=3.0),
    dict(strength=0.67), dict(dilated_pass=False), dict(guidance_scale=3.0), dict(negative_prompt="blurry"),
], ids=lambda change: next(iter(change)))
def test_every_argument_has_an_effect(pipe, baseline, change):
    latents = run(pipe, **change)[1]
    assert (latents - baseline).abs().max() > 1e-4


def test_memory_options_keep_the_result(pipe, baseline):
    assert torch.equal(run(pipe, offload_anchors=True)[1], baseline)
    # batch 1 and batch 2 round differently; guidance multiplies the difference by 7
    torch.testing.assert_close(run(pipe, split_cfg_batch=True)[1], baseline, rtol=1e-3, atol=1e-4)


def test_vae_tiling_is_used_and_restored(pipe):
    tiling_during_encode = []
    handle = pipe.vae.encoder.register_forward_pre_hook(lambda m, a: tiling_during_encode.append(pipe.vae.use_tiling))
    try:
        run(pipe, noise_image(32, 32), strength=0.5, steps=2, vae_tiling=True)  # 64 px: over the 32 px tile
    finally:
        handle.remove()
    assert tiling_during_encode and all(tiling_during_encode)
    assert pipe.vae.use_tiling is False


@pytest.mark.parametrize("strength, steps", [(1.0, 10), (0.3, 3)])
@pytest.mark.parametrize("dilated_pass, split, per_step", [(True, False, 2), (False, False, 1), (True, True, 4)])
def test_unet_calls(pipe, strength, steps, dilated_pass, split, per_step):
    """int(10 * strength) steps are kept, each with one or two UNet passes (one call each, two if split)."""
    counter = CountCalls(pipe.unet)
    try:
        run(pipe, noise_image(8, 8), strength=strength, steps=10, dilated_pass=dilated_pass, split_cfg_batch=split)
    finally:
        counter.handle.remove()
    assert counter.calls == steps * per_step


def test_runs_on_a_gspn_converted_pipeline(sd_pipe):
    from gspn.t2i import convert

    convert(sd_pipe)
    before = conv_state(sd_pipe.unet)
    image, latents = run(sd_pipe, strength=0.5, steps=2)
    assert image.size == (32, 32) and torch.isfinite(latents).all()
    assert conv_state(sd_pipe.unet) == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="   "), "prompt"),
    (dict(prompt=None), "prompt"),
    (dict(strength=0.0), "strength"),
    (dict(strength=1.5), "strength"),
    (dict(strength=0.2, steps=3), "steps \\* strength"),
    (dict(scale=0.5), "scale"),
    (dict(sigma=0.0), "sigma"),
    (dict(scale=1.125), "multiple of 4"),  # 16 px * 1.125 = 18 px
    (dict(image="image.png"), "PIL image or a tensor"),
])
def test_bad_input(pipe, kwargs, message):
    work = [CountCalls(module) for module in (pipe.unet, pipe.vae.encoder, pipe.text_encoder)]
    args = {"image": noise_image(16, 16), "prompt": "a cat", **FAST, **kwargs}
    try:
        with pytest.raises(ConfigError, match=message):
            upscale(pipe, **args)
    finally:
        for counter in work:
            counter.handle.remove()
    assert [counter.calls for counter in work] == [0, 0, 0]  # raised before any work


def test_not_a_pipeline():
    with pytest.raises(ConfigError, match="unet"):
        upscale(object(), noise_image(16, 16), "a cat")
    with pytest.raises(ConfigError, match="vae"):
        generate_highres(nn.Module(), "a cat")


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=(64, 32)), "increasing"),
    (dict(sizes=(32, 32)), "increasing"),
    (dict(sizes=((32, 32), (64, 96))), "differently"),
    (dict(sizes=(32, 64, 128), strength=(0.5,)), "one value per"),
    (dict(sizes=(30, 60)), "multiple of 4"),
    (dict(prompt=""), "prompt"),
])
def test_generate_highres_bad_input(pipe, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate_highres(pipe, **{"prompt": "a cat", **kwargs})


def test_generate_highres(pipe):
    images = generate_highres(pipe, "a cat", sizes=(32, 64), base_steps=2, steps=2, strength=0.5, progress=False,
                              generator=torch.Generator().manual_seed(0))
    assert [image.size for image in images] == [(32, 32), (64, 64)]
