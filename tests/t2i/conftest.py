"""Fixtures of the text-to-image tests: tiny random SD and SD-XL pipelines (gspn.t2i.tiny), UNet inputs, offline.

`sd_pipe` and `sdxl_pipe` are fresh deep copies of pipelines built once per session, so a test may convert,
cast or move them freely.
"""

import copy

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from gspn.t2i.tiny import tiny_pipeline  # noqa: E402  (after the skips)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing in these tests may reach the Hugging Face Hub."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny models gain nothing from more, and on a busy machine two threads made
    each UNet call about ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sd_pipe_once():
    return tiny_pipeline(sdxl=False, seed=0)


@pytest.fixture(scope="session")
def sdxl_pipe_once():
    return tiny_pipeline(sdxl=True, seed=0)


@pytest.fixture
def sd_pipe(sd_pipe_once):
    """A tiny StableDiffusionPipeline (seed 0), a fresh copy for each test."""
    return copy.deepcopy(sd_pipe_once)


@pytest.fixture
def sdxl_pipe(sdxl_pipe_once):
    """A tiny StableDiffusionXLPipeline (seed 0), a fresh copy for each test."""
    return copy.deepcopy(sdxl_pipe_once)


@pytest.fixture
def unet_inputs():
    """A function (unet, batch=1, size=(8, 8), seed=0) -> the keyword arguments of one UNet call: random
    latents of `size`, text states, and for SD-XL the pooled text and size conditioning."""

    def make(unet, batch: int = 1, size: tuple[int, int] = (8, 8), seed: int = 0) -> dict:
        generator = torch.Generator().manual_seed(seed)
        config = unet.config
        inputs = {"sample": torch.randn(batch, config.in_channels, *size, generator=generator),
                  "timestep": torch.tensor(500),
                  "encoder_hidden_states": torch.randn(batch, 16, config.cross_attention_dim, generator=generator)}
        if config.addition_embed_type == "text_time":
            pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            height, width = 2 * size[0], 2 * size[1]
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(batch, 1)
            inputs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, pooled, generator=generator),
                                           "time_ids": time_ids}
        return inputs

    return make


@pytest.fixture
def run_unet():
    """A function (unet, inputs) -> the UNet's output sample, without gradients, cast to the UNet's dtype."""

    def run(unet, inputs: dict) -> torch.Tensor:
        dtype = unet.dtype
        cast = {key: value.to(dtype) if torch.is_floating_point(value) else value for key, value in inputs.items()
                if isinstance(value, torch.Tensor)}
        if "added_cond_kwargs" in inputs:
            cast["added_cond_kwargs"] = {key: value.to(dtype) for key, value in inputs["added_cond_kwargs"].items()}
        with torch.no_grad():
            return unet(**cast).sample

    return run
