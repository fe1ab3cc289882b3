"""LatentFileData: a latents file that cannot be read, or holds something else, is an error naming it."""

import pytest
import torch

from gspn.errors import DataError
from gspn.tasks.generation import LatentFileData


class Payload:
    """Any object outside tensors and containers: loading it would run code from the file."""


def latents(**overrides) -> dict:
    return {"latents": torch.zeros(6, 4, 2, 2).half(), "labels": torch.arange(6) % 2, "classes": ["a", "b"],
            "image_size": 16, **overrides}


@pytest.mark.parametrize("content, message", [
    (b"", "cannot read the latents file"),
    (b"not a torch file", "cannot read the latents file"),
    (latents(payload=Payload()), "cannot read the latents file"),
    ({"latents": torch.zeros(6, 4, 2, 2)}, r"lacks labels, classes, image_size \(write it with extract_latents\)"),
])
def test_a_bad_latents_file_is_an_error_naming_it(content, message, tmp_path):
    path = tmp_path / "latents.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(DataError, match=f"LatentFileData: {path}: {message}"):
        LatentFileData(str(path), num_val=1)


def test_a_latents_file_is_read(tmp_path):
    torch.save(latents(), tmp_path / "latents.pt")
    data = LatentFileData(str(tmp_path / "latents.pt"), num_val=1)
    assert data.classes == ["a", "b"] and data.image_size == 16 and len(data.latents) == 6
