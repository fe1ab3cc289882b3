"""Samples in the ADM evaluation format: the archive itself, and `gspn predict` writing it with the
FID-50K config (shrunk) through the real command."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gspn.cli import cli_main
from gspn.errors import DataError
from gspn.tasks.generation.adm_npz import SampleArchive

from .conftest import tiny_config, write_config

REPO = Path(__file__).resolve().parents[3]


def test_the_archive_streams_batches_into_an_npz_that_numpy_reads(tmp_path):
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 5, 5, 3), dtype=np.uint8) for n in (3, 1, 2)]
    archive = SampleArchive(tmp_path / "samples.npz", 6, 5)
    for k, batch in enumerate(batches):
        archive.add(batch, [k] * len(batch))
    archive.close()
    with np.load(tmp_path / "samples.npz") as data:
        assert np.array_equal(data["arr_0"], np.concatenate(batches))
        assert data["arr_1"].tolist() == [0, 0, 0, 1, 2, 2]


def test_a_short_archive_is_removed_and_a_wrong_batch_refused(tmp_path):
    archive = SampleArchive(tmp_path / "samples.npz", 4, 5)
    with pytest.raises(DataError, match=r"must be uint8 \(n, 5, 5, 3\), got float32"):
        archive.add(np.zeros((1, 5, 5, 3), np.float32), [0])
    archive.add(np.zeros((3, 5, 5, 3), np.uint8), [0, 0, 0])
    with pytest.raises(DataError, match="more than the 4 samples"):
        archive.add(np.zeros((2, 5, 5, 3), np.uint8), [0, 0])
    with pytest.raises(DataError, match="3 of 4 samples were written; the file is removed"):
        archive.close()
    assert not (tmp_path / "samples.npz").exists()


def test_predict_with_the_fid_config_writes_the_samples_the_pngs_show(tmp_path):
    """The FID-50K config composed over a run's config (its sample count and steps shrunk on the command
    line): samples.npz holds, in the order predicted, exactly the images the PNGs of the same predict hold."""
    config = tiny_config(tmp_path / "run")
    cli_main(["fit", "--config", write_config(tmp_path / "fit.yaml", config)])
    predict = ["predict", "--config", str(tmp_path / "fit.yaml"), "--config",
               str(REPO / "tasks" / "generation" / "configs" / "fid50k.yaml"), "--ckpt_path", "last",
               "--model.init_args.sampling_steps", "2", "--data.init_args.samples_per_class", "2"]
    out = tmp_path / "run" / "predictions"
    cli = cli_main(predict)
    assert cli.model.hparams.sampler == "ddpm" and cli.model.hparams.guidance_scale == 1.0
    assert [path.name for path in out.iterdir()] == ["samples.npz"]
    with np.load(out / "samples.npz") as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.shape == (16, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [label for label in range(8) for _ in range(2)]

    cli_main([*predict, "--model.init_args.sample_files", "png+npz"])
    with np.load(out / "samples.npz") as data:
        assert np.array_equal(data["arr_0"], images)
    classes = cli.datamodule.classes
    for i, label in enumerate(labels):
        png = np.array(Image.open(out / classes[label] / f"{i % 2:05d}.png").convert("RGB"))
        assert np.array_equal(png, images[i])
