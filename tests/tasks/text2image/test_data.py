"""The text-to-image data modules: captioned shapes, caption folders (both conventions), latent files, prompts."""

import json

import pytest
import torch
from PIL import Image

from gspn.errors import ConfigError, DataError
from gspn.tasks.shapes import CLASSES
from gspn.tasks.text2image import CaptionedShapesData, CaptionFolderData, LatentCaptionData
from gspn.tasks.text2image.data import SHAPE_CAPTIONS


def samples(data, split: str) -> list[dict]:
    data.setup("fit")
    return [data.datasets[split][i] for i in range(len(data.datasets[split]))]


def test_captioned_shapes_are_deterministic_and_captioned_by_class():
    first, second = (samples(CaptionedShapesData(num_train=24, num_val=8, image_size=16), "train") for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a["pixels"], b["pixels"]) and a["caption"] == b["caption"]
    assert first[0]["pixels"].shape == (3, 16, 16) and -1 <= first[0]["pixels"].min() <= first[0]["pixels"].max() <= 1
    for index, item in enumerate(first):  # SyntheticShapes' labels cycle through the classes
        assert item["caption"] in SHAPE_CAPTIONS[CLASSES[index % len(CLASSES)]]
    assert len({item["caption"] for item in first}) == 24  # three phrasings of each of the eight classes
    vocabulary = set(CaptionedShapesData().vocabulary)
    assert all(set(caption.split()) <= vocabulary for phrasings in SHAPE_CAPTIONS.values() for caption in phrasings)


def write_image(path, size=(40, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def test_caption_folder_reads_sidecar_captions(tmp_path):
    for i in range(3):
        write_image(tmp_path / "sub" / f"{i}.png")
        (tmp_path / "sub" / f"{i}.txt").write_text(f"caption {i}\n")
    data = CaptionFolderData(str(tmp_path), resolution=16, num_val=1)
    assert data.captions == ["caption 0", "caption 1", "caption 2"]
    item = samples(data, "val")[0]
    assert item["pixels"].shape == (3, 16, 16)
    # 40 x 24 (W x H): the short side 24 -> 16, the width 40 -> 27, a centred crop 5 pixels from the left
    assert item["original_size"].tolist() == [24, 40] and item["crop_top_left"].tolist() == [0, 5]


def test_caption_folder_reads_metadata_jsonl(tmp_path):
    for name in ("a.png", "b.jpg"):
        write_image(tmp_path / "images" / name)
    lines = [{"file_name": "images/a.png", "text": "first"}, {"file_name": "images/b.jpg", "text": "second"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    assert CaptionFolderData(str(tmp_path), resolution=16, num_val=1).captions == ["first", "second"]


def test_an_image_without_caption_is_an_error_naming_it(tmp_path):
    write_image(tmp_path / "captioned.png")
    (tmp_path / "captioned.txt").write_text("fine")
    write_image(tmp_path / "lonely.png")
    with pytest.raises(DataError, match=r"1 images have no caption: .*lonely\.png"):
        CaptionFolderData(str(tmp_path))


def test_predict_prompts_come_from_the_list_and_the_file_and_none_is_an_error(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a ring\n\n  a cross  \n")
    data = CaptionedShapesData(prompts=["two discs side by side"], prompts_file=str(prompts))
    data.setup("predict")
    assert [data.datasets["predict"][i] for i in range(3)] == [
        {"prompt": "two discs side by side", "index": 0}, {"prompt": "a ring", "index": 1},
        {"prompt": "a cross", "index": 2}]
    with pytest.raises(ConfigError, match="no prompts are given"):
        CaptionedShapesData().setup("predict")
    prompts.write_text("\n")
    with pytest.raises(ConfigError, match=f"prompts_file {prompts} has no prompt"):
        CaptionedShapesData(prompts_file=str(prompts)).setup("predict")


def test_latent_files_are_split_and_checked(tmp_path):
    path = tmp_path / "latents.pt"
    torch.save({"latents": torch.randn(5, 4, 8, 8), "prompt_embeds": torch.randn(5, 16, 32)}, path)
    data = LatentCaptionData(str(path), num_val=2)
    assert [len(split) for split in (samples(data, "train"), samples(data, "val"))] == [3, 2]
    torch.save({"latents": torch.randn(5, 4, 8, 8)}, path)
    with pytest.raises(DataError, match="lacks prompt_embeds"):
        LatentCaptionData(str(path), num_val=2).setup("fit")
