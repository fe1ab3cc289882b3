"""Data plumbing shared by every task: a LightningDataModule base whose training order and
augmentation are functions of (seed, epoch, sample) only, and that resumes mid-epoch exactly.

The training sampler shuffles by (seed, epoch), splits over the ranks and yields keys
(index, seed, epoch); `SeededSamples` reads each sample with torch's generator seeded from its key,
so augmentation does not depend on workers, ranks or resumption. The data module saves how many
batches of the epoch were trained in the checkpoint, and a resumed run skips exactly those.
"""

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from gspn.errors import ConfigError


class EpochShuffleSampler(DistributedSampler):
    """A DistributedSampler yielding keys (index, seed, epoch). `resume` = (epoch, count) drops the
    first `count` keys the first time that epoch is served (a mid-epoch resume); the sampler's length
    stays the whole epoch's."""

    def __init__(self, *args, resume: tuple[int, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume = resume

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        indices = list(super().__iter__())
        if self.resume is not None and self.resume[0] == self.epoch:
            indices = indices[self.resume[1]:]
            self.resume = None
        return iter([(index, self.seed, self.epoch) for index in indices])


class SeededSamples(Dataset):
    """Reads `dataset[index]` for a key (index, seed, epoch) with torch's global CPU generator seeded
    from the key (and restored afterwards).

    Only the CPU generator is seeded: `torch.manual_seed` would also queue seeds for every accelerator
    backend, each capturing a stack trace while the backend is uninitialised (about 3 ms a sample)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, seed, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0]))
            return self.dataset[index]


class TaskDataModule(LightningDataModule):
    """Loaders over the datasets a subclass puts in `self.datasets` in `setup`: "train", "val",
    "test" and "predict" (prediction falls back to "val" when there is no "predict")."""

    def __init__(self, batch_size: int = 64, num_workers: int = 4):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"{type(self).__name__}: batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, Dataset] = {}
        self.resume_batches: tuple[int, int] | None = None  # (epoch, batches already trained in it)

    def collate_fn(self, split: str):
        return None  # torch's default collation

    def loader(self, split: str, sampler: Sampler | None = None, drop_last: bool = False,
               batch_size: int | None = None) -> DataLoader:
        dataset = self.datasets[split]
        return DataLoader(SeededSamples(dataset) if split == "train" else dataset,
                          batch_size=batch_size or self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), collate_fn=self.collate_fn(split))

    def train_dataloader(self) -> DataLoader:
        # Lightning may build this loader before it restores the loops from a checkpoint, so the
        # sampler is told which epoch to shorten rather than the current one.
        resume = None
        if self.resume_batches is not None:
            epoch, batches = self.resume_batches
            resume = (epoch, batches * self.batch_size)
            self.resume_batches = None
        return self.loader("train", self.training_sampler(resume), drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict" if "predict" in self.datasets else "val")

    def training_sampler(self, resume: tuple[int, int] | None = None) -> EpochShuffleSampler:
        trainer = self.trainer
        return EpochShuffleSampler(self.datasets["train"], num_replicas=trainer.world_size if trainer else 1,
                                   rank=trainer.global_rank if trainer else 0,
                                   seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), drop_last=True, resume=resume)

    def describe_training_batch(self, epoch: int, batch_index: int) -> str:
        """The samples of this rank's training batch `batch_index` of `epoch`, by file where the
        dataset has files (`samples` of (path, ...) or `paths`), else by index."""
        sampler = self.training_sampler()
        sampler.set_epoch(epoch)
        indices = list(sampler)[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
        dataset = self.datasets["train"]
        if hasattr(dataset, "samples"):
            return "files " + ", ".join(str(dataset.samples[index][0]) for index, _, _ in indices)
        if hasattr(dataset, "paths"):
            return "files " + ", ".join(str(dataset.paths[index]) for index, _, _ in indices)
        return "training samples " + ", ".join(str(index) for index, _, _ in indices)

    def state_dict(self) -> dict[str, int]:
        # Saved with every checkpoint of `fit`, whether written during training, during a validation
        # inside the epoch or when training ends: how many batches of the current epoch are done. A
        # complete epoch records nothing (the next one starts from its beginning).
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit" or trainer.sanity_checking:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done == 0 or done >= trainer.num_training_batches:
            return {}
        # the epoch in progress (current_epoch already counts it done when training stops inside it)
        return {"epoch": trainer.fit_loop.epoch_progress.current.started - 1, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self.resume_batches = (state["epoch"], state["batches"])
