"""A loader that lives on the training device: batches for N seeds, drawn and augmented there.

The loader keeps each split as one uint8 tensor on the device. Every batch is gathered,
normalised, cropped and flipped there, for N seeds at once; the shuffle, the augmentation
and the model's dropout masks draw from a generator per seed, so two runs with the same
seed see the same images in the same order with the same crops (common random numbers
across the arms of a claim).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnconv.engine.datasets import Split
from cnnconv.engine.validation import check_choice


@dataclass(frozen=True)
class Augmentation:
    """Per-sample training augmentation: pad-4 random crop and flip, optional cutout."""

    crop_and_flip: bool
    pad_mode: str = "constant"
    cutout: int = 0  # side of a zeroed square (in normalised pixels), 0 for none


AUGMENTATIONS = {
    "none": Augmentation(False),
    "crop_flip": Augmentation(True),
    "crop_flip_reflect": Augmentation(True, "reflect"),
    "crop_flip_reflect_cutout": Augmentation(True, "reflect", cutout=8),  # cifar10-fast (P2)
}


@dataclass(frozen=True)
class Batch:
    """One step's batches for N seeds: images ``[N, B, C, H, W]``, labels ``[N, B]``,
    (for mixup) each sample's partner in its batch, ``[N, B]``, and (for a model with
    dropout) one keep-mask ``[N, B, ...]`` per dropout call."""

    images: Tensor
    labels: Tensor
    partners: Tensor | None = None
    dropout: tuple[Tensor, ...] = ()


class DeviceLoader:
    """Batches for N seeds at once, drawn on the device from a split kept there as uint8.

    Each seed has its own generator (seeded by that seed) and draws, once per epoch, a
    permutation of the split and every sample's crop offset, flip, cutout corner, mixup
    partner and dropout masks (``dropout``: ``(p, per-sample shape)`` per dropout call of
    the model, ``stacking.dropout_shapes``). So a seed sees the same data whichever seeds it is
    stacked with, and each step gathers and augments all seeds' batches in a few kernels.
    A partial last batch is dropped, so ``samples_seen == iterations * batch_size`` per
    seed exactly.
    """

    def __init__(
        self,
        split: Split,
        mean: Tensor,
        std: Tensor,
        batch_size: int,
        device: torch.device | str,
        dtype: torch.dtype,
        seeds: list[int] | tuple[int, ...],
        augment: str = "crop_flip",
        partners: bool = False,
        dropout: Sequence[tuple[float, tuple[int, ...]]] = (),
    ) -> None:
        if batch_size > len(split):
            raise ValueError(f"batch size {batch_size} exceeds the {len(split)} samples of the split")
        check_choice("augment", augment, AUGMENTATIONS)
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.shift, self.scale = _normaliser(mean, std, self.device, dtype)
        self.batch_size = batch_size
        self.dtype = dtype
        self.augmentation = AUGMENTATIONS[augment]
        self.partners = partners
        self.dropout = list(dropout)
        self.generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        self.batches_per_epoch = len(split) // batch_size
        self.iterations = 0
        # Index grids for cropping, the same every step: built once.
        h, w = self.images.shape[2:]
        self._rows = torch.arange(h, device=self.device)
        self._cols = torch.arange(w, device=self.device)

    @property
    def samples_seen(self) -> int:
        return self.iterations * self.batch_size

    @property
    def epochs(self) -> float:
        return self.iterations / self.batches_per_epoch

    def _draw_epoch(self) -> dict[str, Tensor]:
        """Every random choice of one epoch, per seed, stacked: ``[N, ...]`` each."""
        n, (_, h, w) = len(self.labels), self.images.shape[1:]
        aug, draws = self.augmentation, {}
        for generator in self.generators:
            def draw(name: str, value: Tensor) -> None:
                draws.setdefault(name, []).append(value)

            kwargs = {"generator": generator, "device": self.device}
            draw("order", torch.randperm(n, **kwargs))
            if aug.crop_and_flip:
                draw("offsets", torch.randint(0, 9, (2, n), **kwargs))
                draw("flips", torch.rand(n, **kwargs) < 0.5)
            if aug.cutout:
                draw("corners", torch.randint(0, min(h, w) - aug.cutout + 1, (2, n), **kwargs))
            if self.partners:
                draw("partners", torch.rand(self.batches_per_epoch, self.batch_size, **kwargs)
                     .argsort(dim=1))
            positions = self.batches_per_epoch * self.batch_size
            for layer, (p, shape) in enumerate(self.dropout):
                draw(f"dropout{layer}", torch.rand(positions, *shape, **kwargs) >= p)
        return {name: torch.stack(values) for name, values in draws.items()}

    def _augment(self, x: Tensor, draws: dict[str, Tensor], part: slice) -> Tensor:
        seeds, batch, c, h, w = x.shape
        aug = self.augmentation
        x = x.flatten(0, 1)
        rows, cols = self._rows, self._cols
        if aug.crop_and_flip:
            # crop and flip are one gather: a flipped sample reads its crop's columns in
            # reverse (one kernel; indexing with four broadcast index tensors, then a
            # flip and a select, cost 5x as much)
            offsets = draws["offsets"][:, :, part].transpose(0, 1).flatten(1)  # [2, N*B]
            flips = draws["flips"][:, part].flatten()
            padded = F.pad(x, (4, 4, 4, 4), mode=aug.pad_mode)
            columns = offsets[1, :, None] + torch.where(flips[:, None], w - 1 - cols, cols)
            pixels = ((offsets[0, :, None] + rows)[:, :, None] * padded.shape[3]
                      + columns[:, None, :]).flatten(1)  # [N*B, h*w] into the padded plane
            x = padded.flatten(2).gather(2, pixels[:, None, :].expand(-1, c, -1)).view(-1, c, h, w)
        if aug.cutout:
            corners = draws["corners"][:, :, part].transpose(0, 1).flatten(1)
            inside_rows = (rows >= corners[0, :, None]) & (rows < corners[0, :, None] + aug.cutout)
            inside_cols = (cols >= corners[1, :, None]) & (cols < corners[1, :, None] + aug.cutout)
            hole = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
            x = x.masked_fill(hole, 0)
        return x.view(seeds, batch, c, h, w)

    def __iter__(self) -> Iterator[Batch]:
        """Endless batches; stop by iteration count in the caller."""
        while True:
            draws = self._draw_epoch()
            for step in range(self.batches_per_epoch):
                part = slice(step * self.batch_size, (step + 1) * self.batch_size)
                index = draws["order"][:, part]
                x = (self.images[index].to(self.dtype) - self.shift) * self.scale
                if self.augmentation.crop_and_flip or self.augmentation.cutout:
                    x = self._augment(x, draws, part)
                self.iterations += 1
                partners = draws["partners"][:, step] if self.partners else None
                masks = tuple(draws[f"dropout{layer}"][:, part] for layer in range(len(self.dropout)))
                yield Batch(x, self.labels[index], partners, masks)


def evaluation_batches(
    split: Split, mean: Tensor, std: Tensor, device: torch.device, dtype: torch.dtype,
    batch_size: int = 1000,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The split in order, normalised, without augmentation."""
    shift, scale = _normaliser(mean, std, device, dtype)
    images, labels = split.images.to(device), split.labels.to(device)
    for start in range(0, len(split), batch_size):
        stop = start + batch_size
        yield (images[start:stop].to(dtype) - shift) * scale, labels[start:stop]


def _normaliser(
    mean: Tensor, std: Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Shift and scale that map uint8 pixels to zero mean, unit variance per channel."""
    shape = (1, -1, 1, 1)
    return (mean * 255).to(device, dtype).view(shape), (1 / (std * 255)).to(device, dtype).view(shape)
