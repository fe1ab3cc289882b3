"""Samples in the ADM evaluation format: one `.npz` holding `arr_0`, uint8 images (N, H, W, 3), and
`arr_1`, their class labels. The reference evaluator of guided-diffusion (FID, sFID, Inception
Score, precision, recall) reads `arr_0`; DiT and the GSPN release write their samples the same way.

The images are streamed into the archive batch by batch (an uncompressed zip64 entry), so 50,000
samples at 256 x 256 (9.8 GB) never sit in memory; `np.load` reads the file as any other `.npz`.
"""

import zipfile
from pathlib import Path

import numpy as np

from gspn.errors import DataError


class SampleArchive:
    """An `.npz` of `count` images of size x size x 3 (uint8), written in the order they are added."""

    def __init__(self, path: Path, count: int, size: int):
        self.path, self.count, self.added = Path(path), count, 0
        self.labels: list[int] = []
        self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.images = self.zip.open("arr_0.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(
            self.images, {"descr": "|u1", "fortran_order": False, "shape": (count, size, size, 3)})
        self.shape = (size, size, 3)

    def add(self, images: np.ndarray, labels: list[int]) -> None:
        """images: uint8 (n, size, size, 3)."""
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise DataError(f"{self.path}: samples must be uint8 (n, {', '.join(map(str, self.shape))}), "
                            f"got {images.dtype} {tuple(images.shape)}")
        if self.added + len(images) > self.count:
            raise DataError(f"{self.path}: more than the {self.count} samples the archive was opened for")
        self.images.write(np.ascontiguousarray(images).tobytes())
        self.labels.extend(labels)
        self.added += len(images)

    def close(self) -> None:
        """Finish the file; one holding fewer samples than announced is removed and is an error."""
        self.images.close()
        if self.added != self.count:
            self.discard()
            raise DataError(f"{self.path}: {self.added} of {self.count} samples were written; the file is removed")
        with self.zip.open("arr_1.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(entry, np.asarray(self.labels, dtype=np.int64))
        self.zip.close()

    def discard(self) -> None:
        """Close without finishing (an interrupted predict) and remove the file."""
        try:
            self.images.close()
            self.zip.close()
        except (OSError, ValueError):
            pass
        self.path.unlink(missing_ok=True)
