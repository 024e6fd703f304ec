"""LightningDataModule over edge_sdk data sets (YOLO data.yaml or COCO json)."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from edge_sdk.datasets import Dataset, load_dataset
from runtimes.errors import DatasetError
from trainer.augment import AugmentConfig
from trainer.data import EpochSampler, TrainDataset, ValDataset, collate_train, collate_val


class DetectionDataModule(L.LightningDataModule):
    """Train split with augmentation and close-mosaic; val split letterboxed as at deployment."""

    def __init__(self, data: str | Path, imgsz: int = 320, batch: int = 16, workers: int = 2,
                 augment: AugmentConfig | None = None, epochs: int = 100, close_mosaic: int = 10,
                 seed: int = 0, cache: bool = False, train_split: str = "train", val_split: str = "val",
                 val_data: str | Path | None = None, strict: bool = False) -> None:
        super().__init__()
        self.data, self.val_source = Path(data), Path(val_data) if val_data else Path(data)
        self.imgsz, self.batch, self.workers = imgsz, batch, workers
        self.aug = augment or AugmentConfig()
        self.epochs, self.close_mosaic, self.seed, self.cache = epochs, close_mosaic, seed, cache
        self.train_split, self.val_split, self.strict = train_split, val_split, strict
        self.train_data: Dataset | None = None
        self.val_data: Dataset | None = None
        self.train_set: TrainDataset | None = None
        self.sampler: EpochSampler | None = None

    def load(self) -> None:
        """Read both splits (idempotent); call early to learn class names before building the model."""
        if self.train_data is not None:
            return
        self.train_data = load_dataset(self.data, self.train_split, self.strict)
        self.val_data = load_dataset(self.val_source, self.val_split, self.strict)
        if len(self.train_data) == 0:
            raise DatasetError(f"{self.data}: the '{self.train_split}' split has no images")
        if len(self.val_data) == 0:
            raise DatasetError(f"{self.val_source}: the '{self.val_split}' split has no images")
        if self.train_data.names != self.val_data.names:
            raise DatasetError(f"{self.data}: train and val class names differ")

    @property
    def names(self) -> dict[int, str]:
        self.load()
        return dict(self.train_data.names)  # type: ignore[union-attr]

    def setup(self, stage: str | None = None) -> None:
        self.load()
        if self.train_set is None:
            self.train_set = TrainDataset(self.train_data.samples, self.imgsz, self.aug, True, self.seed)  # type: ignore[union-attr]
            if self.cache:
                self.train_set.cache_images()

    def mosaic_on(self, epoch: int) -> bool:
        """Mosaic (and mixup) are used except in the last `close_mosaic` epochs."""
        return epoch < self.epochs - self.close_mosaic

    def set_epoch(self, epoch: int) -> None:
        """Point the training set and sampler at this epoch (called before its workers start)."""
        if self.train_set is not None:
            self.train_set.set_epoch(epoch, self.mosaic_on(epoch))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.sampler = EpochSampler(len(self.train_set), self.seed)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.set_epoch(epoch)
        return DataLoader(self.train_set, self.batch, sampler=self.sampler, num_workers=self.workers,
                          collate_fn=collate_train, drop_last=len(self.train_set) >= 2 * self.batch,
                          persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        assert self.val_data is not None
        return DataLoader(ValDataset(self.val_data.samples, self.imgsz), self.batch, shuffle=False,
                          num_workers=self.workers, collate_fn=collate_val)
