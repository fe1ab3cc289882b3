"""gspn.t2i.convert on tiny SD and SD-XL pipelines: exactly the attn1 layers swapped, any latent size, the map
size handed over by the hooks, processors reset around it, detach / attach exact, pipelines still running."""

import copy

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

import gspn.t2i as t2i
from gspn.errors import ConfigError
from gspn.t2i import GSPNSelfAttention

LAYERS = 7  # attn1 layers of the tiny UNets: one per level down and up (two up), one in the middle
FULL_SIZE = ("down_blocks.0.", "up_blocks.1.")  # the layers at the latent's own size; the others at half


@pytest.fixture(params=["sd_pipe", "sdxl_pipe"])
def pipe(request):
    return request.getfixturevalue(request.param)


def rows(inputs: dict, index: slice) -> dict:
    """The inputs of a few batch rows (the timestep is shared)."""
    return {key: rows(value, index) if isinstance(value, dict) else value if value.ndim == 0 else value[index]
            for key, value in inputs.items()}


def test_finds_exactly_the_self_attention_layers(pipe):
    names = t2i.self_attention_names(pipe)
    attention = {name: module for name, module in pipe.unet.named_modules() if isinstance(module, Attention)}
    assert len(names) == LAYERS
    assert names == [name for name in attention if name.endswith(".attn1")]
    assert not any(attention[name].is_cross_attention for name in names)


def test_unet_of_takes_a_pipeline_or_its_unet(sd_pipe):
    assert t2i.unet_of(sd_pipe) is sd_pipe.unet
    assert t2i.unet_of(sd_pipe.unet) is sd_pipe.unet
    with pytest.raises(TypeError, match="UNet2DConditionModel.*AutoencoderKL"):
        t2i.unet_of(sd_pipe.vae)


@pytest.mark.parametrize("variant", ["gspn1", "gspn2"])
@pytest.mark.parametrize("chunk", [None, 4])
def test_convert_keeps_output_shapes(pipe, unet_inputs, run_unet, variant, chunk):
    unet = t2i.convert(pipe, variant=variant, chunk=chunk)
    assert {(module.variant, module.chunk) for module in t2i.gspn_modules(unet).values()} == {(variant, chunk)}
    for size in [(8, 8), (8, 12), (9, 13)]:
        inputs = unet_inputs(unet, batch=2, size=size)
        output = run_unet(unet, inputs)
        assert output.shape == (2, 4, *size) and output.isfinite().all()
        torch.testing.assert_close(output[1:], run_unet(unet, rows(inputs, slice(1, 2))))
    # classifier-free guidance: one latent twice, with the unconditional and the conditional text
    inputs = unet_inputs(unet, batch=2, size=(8, 12))
    inputs["sample"] = inputs["sample"][:1].repeat(2, 1, 1, 1)
    output = run_unet(unet, inputs)
    assert output.shape == (2, 4, 8, 12) and output.isfinite().all()
    assert not torch.allclose(output[0], output[1])


def test_hooks_give_each_module_its_map_size(pipe, unet_inputs, run_unet):
    unet = t2i.convert(pipe)
    seen = {}
    for name, module in t2i.gspn_modules(unet).items():
        module.register_forward_pre_hook(lambda module, args, name=name: seen.__setitem__(name, module.hw))
    run_unet(unet, unet_inputs(unet, size=(9, 13)))
    assert seen == {name: (9, 13) if name.startswith(FULL_SIZE) else (5, 7) for name in t2i.gspn_modules(unet)}


def test_bad_settings_are_refused_by_name(sd_pipe):
    for kwargs, message in [({"variant": "gspn3"}, "variant must be one of gspn1, gspn2, got 'gspn3'"),
                            ({"init": "zeros"}, "init must be one of random, teacher, got 'zeros'"),
                            ({"proxy": 0}, "proxy must be None or at least 1"),
                            ({"chunk": 0}, "chunk must be None or at least 1"),
                            ({"chunk": {"down_blocks.7": 4}}, r"chunk keys \['down_blocks.7'\] match no")]:
        with pytest.raises(ValueError, match=message):
            t2i.convert(sd_pipe, **kwargs)
        assert not t2i.is_converted(sd_pipe)
    t2i.convert(sd_pipe)
    with pytest.raises(ConfigError, match="already converted"):
        t2i.convert(sd_pipe)


def test_chunk_per_block_prefix(sd_pipe):
    t2i.convert(sd_pipe, chunk={"": 2, "down_blocks.0": 4, "mid_block": None})
    chunks = {name: module.chunk for name, module in t2i.gspn_modules(sd_pipe).items()}
    assert chunks == {name: 4 if name.startswith("down_blocks.0.") else None if name.startswith("mid_block.") else 2
                      for name in chunks}


def test_processor_resets_leave_the_gspn_modules_in_place(pipe, unet_inputs, run_unet):
    unet = pipe.unet
    before = len(unet.attn_processors)
    t2i.convert(pipe)
    modules = t2i.gspn_modules(unet)
    assert len(unet.attn_processors) == before - LAYERS
    inputs = unet_inputs(unet, size=(8, 12))
    output = run_unet(unet, inputs)
    unet.set_attn_processor(AttnProcessor2_0())
    unet.set_attn_processor({key: AttnProcessor() for key in unet.attn_processors})
    unet.set_default_attn_processor()
    assert all(unet.get_submodule(name) is module for name, module in modules.items())
    torch.testing.assert_close(run_unet(unet, inputs), output)


def test_pipelines_run_before_and_after_convert(pipe):
    def generate():
        return pipe("a cat", height=64, width=96, num_inference_steps=2, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    before = generate()
    t2i.convert(pipe, chunk=4)
    after = generate()
    assert before.shape == after.shape == (1, 64, 96, 3)
    assert torch.from_numpy(after).isfinite().all() and not (before == after).all()
    # the tiny VAE halves the side: a 32 x 48 latent
    assert t2i.gspn_modules(pipe)["down_blocks.0.attentions.0.transformer_blocks.0.attn1"].hw == (32, 48)


def test_detach_and_attach_give_back_exact_outputs(pipe, unet_inputs, run_unet):
    unet = pipe.unet
    inputs = unet_inputs(unet, batch=2, size=(8, 12))
    original = run_unet(unet, inputs)
    t2i.convert(pipe)
    modules = t2i.gspn_modules(unet)
    converted = run_unet(unet, inputs)
    assert not torch.allclose(converted, original)
    t2i.detach(pipe)
    assert torch.equal(run_unet(unet, inputs), original)
    assert t2i.is_converted(pipe) and t2i.gspn_modules(pipe) == modules
    t2i.attach(pipe)
    assert torch.equal(run_unet(unet, inputs), converted)


def test_detach_and_attach_need_a_converted_unet(sd_pipe):
    assert not t2i.is_converted(sd_pipe) and t2i.gspn_modules(sd_pipe) == {}
    for switch in (t2i.detach, t2i.attach):
        with pytest.raises(ConfigError, match=f"{switch.__name__}: the UNet is not converted"):
            switch(sd_pipe)


def test_gspn_modules_by_layer_path(pipe):
    names = t2i.self_attention_names(pipe)
    dims = [pipe.unet.get_submodule(name).to_q.in_features for name in names]
    t2i.convert(pipe)
    modules = t2i.gspn_modules(pipe)
    assert list(modules) == names == t2i.self_attention_names(pipe)
    assert [module.dim for module in modules.values()] == dims
    assert all(isinstance(module, GSPNSelfAttention) and pipe.unet.get_submodule(name) is module
               for name, module in modules.items())


def test_new_modules_are_float32_on_the_layers_device_unless_told(sd_pipe, sdxl_pipe, unet_inputs, run_unet):
    sd_pipe.unet.to(torch.bfloat16)
    t2i.convert(sd_pipe)
    assert {p.dtype for module in t2i.gspn_modules(sd_pipe).values() for p in module.parameters()} == {torch.float32}
    output = run_unet(sd_pipe.unet, unet_inputs(sd_pipe.unet, size=(8, 12)))
    assert output.dtype == torch.bfloat16 and output.isfinite().all()
    t2i.convert(sdxl_pipe, dtype=torch.bfloat16)
    assert {p.dtype for module in t2i.gspn_modules(sdxl_pipe).values() for p in module.parameters()} == {torch.bfloat16}


def test_detach_follows_a_cast_of_the_unet(sd_pipe, unet_inputs, run_unet):
    unet = t2i.convert(sd_pipe)
    unet.to(torch.bfloat16)
    t2i.detach(sd_pipe)
    assert {p.dtype for p in unet.parameters()} == {torch.bfloat16}
    inputs = unet_inputs(unet, size=(8, 12))
    assert run_unet(unet, inputs).isfinite().all()
    t2i.attach(sd_pipe)
    assert run_unet(unet, inputs).isfinite().all()


def test_a_deep_copy_of_a_converted_unet_computes_the_same(sd_pipe, unet_inputs, run_unet):
    unet = t2i.convert(sd_pipe)
    twin = copy.deepcopy(unet)
    inputs = unet_inputs(unet, size=(8, 12))
    assert torch.equal(run_unet(twin, inputs), run_unet(unet, inputs))
    t2i.detach(twin)
    assert t2i.is_converted(unet) and isinstance(unet.get_submodule(t2i.self_attention_names(unet)[0]),
                                                 GSPNSelfAttention)


def test_teacher_init_copies_to_out_and_starts_at_its_bias(sd_pipe):
    originals = {name: sd_pipe.unet.get_submodule(name) for name in t2i.self_attention_names(sd_pipe)}
    t2i.convert(sd_pipe, init="teacher")
    for name, module in t2i.gspn_modules(sd_pipe).items():
        teacher = originals[name].to_out[0]
        assert torch.equal(module.to_out.weight, teacher.weight) and torch.equal(module.to_out.bias, teacher.bias)
        assert not module.merge.any()
        module.hw = (3, 5)
        with torch.no_grad():
            output = module(torch.randn(2, 15, module.dim))
        torch.testing.assert_close(output, teacher.bias.expand_as(output))


def test_random_init_does_not_copy_the_teacher(sd_pipe):
    originals = {name: sd_pipe.unet.get_submodule(name) for name in t2i.self_attention_names(sd_pipe)}
    t2i.convert(sd_pipe)
    for name, module in t2i.gspn_modules(sd_pipe).items():
        assert not torch.equal(module.to_out.weight, originals[name].to_out[0].weight) and module.merge.all()


def test_a_controlnet_pipeline_converts_its_unet_and_leaves_the_controlnet_attention(sd_pipe):
    """ControlNet pipelines: the UNet's attn1 layers become GSPN, the ControlNet keeps its own attention."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    controlnet = ControlNetModel.from_unet(sd_pipe.unet, conditioning_embedding_out_channels=(8, 16))
    pipe = StableDiffusionControlNetPipeline(**{**sd_pipe.components, "controlnet": controlnet})
    before = [name for name, module in controlnet.named_modules() if isinstance(module, Attention)]
    t2i.convert(pipe)
    assert len(t2i.gspn_modules(pipe)) == 7
    assert [name for name, module in controlnet.named_modules() if isinstance(module, Attention)] == before
    condition = torch.rand(1, 3, 64, 96)
    image = pipe("a ring", image=condition, num_inference_steps=2, height=64, width=96, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 64, 96) and image.isfinite().all()
