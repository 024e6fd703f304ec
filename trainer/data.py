"""Torch datasets over edge_sdk data sets (augmented training, letterboxed validation) and collate."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from edge_sdk.datasets import Sample
from edge_sdk.frames import read_image
from edge_sdk.letterbox import letterbox_image
from trainer import augment as A
from trainer.augment import AugmentConfig, Labelled


def to_chw_rgb(image: np.ndarray) -> torch.Tensor:
    """HxWx3 BGR uint8 -> 3xHxW RGB uint8 tensor (the model scales to [0, 1] itself)."""
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)))


class TrainDataset(TorchDataset):
    """Augmented training images. Randomness depends only on (seed, epoch, index), so resumes repeat it."""

    def __init__(self, samples: Sequence[Sample], imgsz: int, cfg: AugmentConfig, augment: bool = True,
                 seed: int = 0) -> None:
        self.samples, self.imgsz, self.cfg, self.augment, self.seed = list(samples), imgsz, cfg, augment, seed
        self.epoch, self.mosaic_on = 0, True
        self._cache: dict[int, Labelled] = {}

    def set_epoch(self, epoch: int, mosaic_on: bool) -> None:
        """Select the epoch's random stream and whether mosaic/mixup are used (off = close-mosaic)."""
        self.epoch, self.mosaic_on = int(epoch), bool(mosaic_on)

    def cache_images(self) -> None:
        """Decode and resize every image once (call before worker processes start)."""
        for i in range(len(self.samples)):
            self._cache[i] = self._read(i)

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, i: int) -> Labelled:
        s = self.samples[i]
        keep = ~s.iscrowd.astype(bool) if len(s.iscrowd) == len(s.class_ids) else slice(None)
        image, boxes = A.resize_long_side(read_image(s.image_path), s.boxes_xyxy[keep].astype(np.float32),
                                          self.imgsz)
        return image, boxes, s.class_ids[keep].astype(np.int64)

    def load(self, i: int) -> Labelled:
        """Image resized so its long side is imgsz, with its non-crowd boxes and classes."""
        return self._cache[i] if i in self._cache else self._read(i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        image, boxes, cls = self.build(i, rng)
        empty = np.zeros((0, 5), np.float32)
        target = np.concatenate((cls[:, None].astype(np.float32), boxes), 1) if len(cls) else empty
        return to_chw_rgb(image), torch.from_numpy(target)

    def build(self, i: int, rng: np.random.Generator) -> Labelled:
        """One training sample (imgsz x imgsz) with its boxes after every augmentation."""
        cfg = self.cfg
        if not self.augment:
            img, boxes, cls = self.load(i)
            return (*A.letterbox(img, boxes, self.imgsz), cls)
        use_mosaic = self.mosaic_on and rng.random() < cfg.mosaic
        sample = self._mosaic(i, rng) if use_mosaic else self._single(i, rng)
        if use_mosaic and rng.random() < cfg.mixup:
            sample = A.mixup(sample, self._mosaic(int(rng.integers(len(self))), rng), rng)
        img = A.hsv(sample[0], cfg, rng)
        sample = (img, sample[1], sample[2])
        if rng.random() < cfg.fliplr:
            sample = A.hflip(sample)
        return sample

    def _mosaic(self, i: int, rng: np.random.Generator) -> Labelled:
        picks = [i, *(int(j) for j in rng.integers(0, len(self), 3))]
        canvas = A.mosaic4([self.load(j) for j in picks], self.imgsz, rng)
        return A.random_affine(canvas, self.imgsz, self.cfg, rng)

    def _single(self, i: int, rng: np.random.Generator) -> Labelled:
        img, boxes, cls = self.load(i)
        img, boxes = A.letterbox(img, boxes, self.imgsz)
        return A.random_affine((img, boxes, cls), self.imgsz, self.cfg, rng)


class ValDataset(TorchDataset):
    """Validation images letterboxed exactly as edge_sdk preprocesses them for deployment."""

    def __init__(self, samples: Sequence[Sample], imgsz: int) -> None:
        self.samples, self.imgsz = list(samples), imgsz

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        padded, lb = letterbox_image(read_image(self.samples[i].image_path), (self.imgsz, self.imgsz))
        geometry = torch.tensor([i, lb.scale, lb.pad_x, lb.pad_y, *lb.image_size], dtype=torch.float64)
        return to_chw_rgb(padded), geometry


def collate_train(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; targets become rows (image_index, class, x1, y1, x2, y2)."""
    images = torch.stack([b[0] for b in batch])
    rows = [torch.cat((torch.full((len(t), 1), float(k)), t), 1) for k, (_, t) in enumerate(batch)]
    return images, torch.cat(rows) if rows else torch.zeros(0, 6)


def collate_val(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and their letterbox geometry rows (index, scale, pad_x, pad_y, h, w)."""
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


class EpochSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): the same order again after a resume."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng((self.seed, self.epoch, 7)).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n
