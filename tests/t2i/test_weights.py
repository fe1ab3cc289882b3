"""gspn.t2i.save / load: only the GSPN modules in the file, identical outputs after loading into a fresh pipeline,
and files for another base model, with other settings, other keys or missing refused with the file named."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import gspn
import gspn.t2i as t2i
from gspn.errors import CheckpointError, ConfigError
from gspn.models.hub import write_safetensors
from gspn.t2i.tiny import tiny_pipeline, tiny_unet

SETTINGS = {"variant": "gspn1", "chunk": {"down_blocks.0": 4}, "proxy": 3}


@pytest.fixture(params=["sd_pipe", "sdxl_pipe"])
def pipe(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def saved(sd_pipe, tmp_path):
    """A tiny SD pipeline converted with SETTINGS and the file it was saved to."""
    t2i.convert(sd_pipe, **SETTINGS)
    file = tmp_path / "gspn.safetensors"
    t2i.save(sd_pipe, file)
    return sd_pipe, file


def test_round_trip_into_a_fresh_pipeline_gives_identical_outputs(pipe, tmp_path, unet_inputs, run_unet):
    torch.manual_seed(0)
    t2i.convert(pipe, **SETTINGS)
    inputs = unet_inputs(pipe.unet, batch=2, size=(8, 12))
    output = run_unet(pipe.unet, inputs)
    file = tmp_path / "gspn.safetensors"
    t2i.save(pipe, file)

    names = t2i.self_attention_names(pipe)
    with safe_open(str(file), framework="pt") as stored:
        keys, config = list(stored.keys()), json.loads(stored.metadata()["gspn_config"])
    assert {key.partition(".attn1.")[0] + ".attn1" for key in keys} == set(names)
    assert sorted(keys) == sorted(f"{name}.{key}" for name, module in t2i.gspn_modules(pipe).items()
                                  for key in module.state_dict())
    assert config["gspn_version"] == gspn.__version__
    assert config["modules"] == {name: module.settings() for name, module in t2i.gspn_modules(pipe).items()}
    assert config["base"]["layers"] == {name: module.dim for name, module in t2i.gspn_modules(pipe).items()}

    torch.manual_seed(1)  # other random weights before loading
    fresh = tiny_pipeline(sdxl="text_encoder_2" in pipe.components, seed=0)
    t2i.load(fresh, file)
    assert list(t2i.gspn_modules(fresh)) == names
    assert torch.equal(run_unet(fresh.unet, inputs), output)


def test_load_into_a_unet_converted_alike(saved, unet_inputs, run_unet):
    pipe, file = saved
    inputs = unet_inputs(pipe.unet, size=(9, 13))
    other = t2i.convert(tiny_unet(seed=0), **SETTINGS)
    assert not torch.equal(run_unet(other, inputs), run_unet(pipe.unet, inputs))
    t2i.load(other, file)
    assert torch.equal(run_unet(other, inputs), run_unet(pipe.unet, inputs))


def test_another_base_model_of_the_same_shape_is_refused(saved):
    _, file = saved
    other = tiny_pipeline(seed=1)
    with pytest.raises(CheckpointError, match=f"{file}: made for another base model; the cross-attention weights "
                                              "differ.*strict_base=False"):
        t2i.load(other, file)
    assert not t2i.is_converted(other)
    t2i.load(other, file, strict_base=False)
    assert t2i.is_converted(other)


def test_a_base_model_of_other_channels_is_refused(saved):
    _, file = saved
    other = tiny_unet(channels=(32, 48))
    with pytest.raises(CheckpointError, match=r"made for another base model; its self-attention layers differ: "
                                              r"down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1 has 64 "
                                              "channels in the file, 48 in the UNet"):
        t2i.load(other, file, strict_base=False)
    assert not t2i.is_converted(other)


def test_other_layers_are_refused(saved):
    _, file = saved
    with pytest.raises(CheckpointError, match=r"attn1 missing in the UNet"):
        t2i.load(tiny_unet(channels=(32,)), file)


def test_base_check_passes_in_half_precision(saved, unet_inputs, run_unet):
    _, file = saved
    for dtype in (torch.float16, torch.bfloat16):
        other = tiny_unet(seed=0).to(dtype)
        t2i.load(other, file)
        assert {p.dtype for module in t2i.gspn_modules(other).values() for p in module.parameters()} == {torch.float32}
    assert run_unet(other, unet_inputs(other, size=(8, 12))).isfinite().all()


def test_other_settings_are_refused(saved):
    _, file = saved
    for kwargs, message in [({**SETTINGS, "variant": "gspn2"}, "variant='gspn1' in the file, 'gspn2' in the UNet"),
                            ({**SETTINGS, "chunk": 4}, "chunk=None in the file, 4 in the UNet")]:
        other = t2i.convert(tiny_unet(seed=0), **kwargs)
        with pytest.raises(CheckpointError, match=f"{file}: made with other settings.*{message}"):
            t2i.load(other, file)


def test_a_missing_file_is_named(sd_pipe, tmp_path):
    with pytest.raises(CheckpointError, match="no such weights file.*absent.safetensors"):
        t2i.load(sd_pipe, tmp_path / "absent.safetensors")
    assert not t2i.is_converted(sd_pipe)


def test_missing_and_unexpected_keys_are_refused(saved, tmp_path):
    pipe, file = saved
    with safe_open(str(file), framework="pt") as stored:
        state = {key: stored.get_tensor(key) for key in stored.keys()}
        metadata = stored.metadata()
    dropped = sorted(state)[0]
    del state[dropped]
    state["mid_block.attentions.0.transformer_blocks.0.attn1.extra"] = torch.zeros(1)
    tampered = tmp_path / "tampered.safetensors"
    save_file(state, str(tampered), metadata=metadata)
    with pytest.raises(CheckpointError, match=rf"tampered.safetensors: does not fit the GSPN modules; missing keys: "
                                              rf"{dropped}; unexpected keys: mid_block.*attn1.extra"):
        t2i.load(tiny_unet(seed=0), tampered)


def test_a_file_without_gspn_settings_is_refused(sd_pipe, tmp_path):
    file = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(file))
    with pytest.raises(CheckpointError, match="plain.safetensors: not a gspn.t2i weights file"):
        t2i.load(sd_pipe, file)
    write_safetensors({"weight": torch.zeros(2)}, file, {"family": "backbone"})  # a gspn weights folder's file
    with pytest.raises(CheckpointError, match="plain.safetensors: not a gspn.t2i weights file"):
        t2i.load(sd_pipe, file)


def test_save_in_half_precision(saved, tmp_path):
    pipe, _ = saved
    file = tmp_path / "half.safetensors"
    t2i.save(pipe, file, dtype=torch.float16)
    with safe_open(str(file), framework="pt") as stored:
        assert {stored.get_tensor(key).dtype for key in stored.keys()} == {torch.float16}
    other = t2i.load(tiny_unet(seed=0), file)
    for name, module in t2i.gspn_modules(other).items():
        expected = t2i.gspn_modules(pipe)[name].to_out.weight.half().float()
        assert torch.equal(module.to_out.weight, expected)


def test_save_needs_a_converted_unet(sd_pipe, tmp_path):
    with pytest.raises(ConfigError, match="not converted"):
        t2i.save(sd_pipe, tmp_path / "gspn.safetensors")


def test_a_folder_to_share_holds_the_file_its_config_and_a_card(saved, tmp_path, unet_inputs, run_unet):
    pipe, _ = saved
    folder = t2i.save(pipe, tmp_path / "gspn-sd-tiny", metrics={"val_loss": 0.125})
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "gspn.t2i" and config["modules"] == {
        name: module.settings() for name, module in t2i.gspn_modules(pipe).items()}
    card = (folder / "README.md").read_text()
    assert '"variant": "gspn1"' in card and "7 GSPN modules" in card and "| val_loss | 0.125 |" in card
    assert all(f"- {name}: {module.dim}" in card for name, module in t2i.gspn_modules(pipe).items())
    fresh = tiny_pipeline(seed=0)
    t2i.load(fresh, folder)  # the folder itself, as from_pretrained takes one
    inputs = unet_inputs(pipe.unet)
    assert torch.equal(run_unet(fresh.unet, inputs), run_unet(pipe.unet, inputs))
