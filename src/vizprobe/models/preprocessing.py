"""A model's exact input preprocessing: resize the shorter side, centre-crop, normalize."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """PIL image -> normalized (3, crop, crop) tensor; `(x - mean) / std` on [0, 1] pixels."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def pil_transform(self) -> transforms.Compose:
        """The reference transform, applied to one RGB PIL image."""
        return transforms.Compose(
            [
                transforms.Resize(self.resize, interpolation=InterpolationMode(self.interpolation)),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.pil_transform()(image)

    def pil_geometry(self) -> transforms.Compose:
        """Resize and centre-crop only: the part of `pil_transform` that must run per image."""
        return transforms.Compose(
            [
                transforms.Resize(self.resize, interpolation=InterpolationMode(self.interpolation)),
                transforms.CenterCrop(self.crop),
            ]
        )

    def to_pixels(self, image: Image.Image) -> torch.Tensor:
        """Resized, cropped RGB image as a uint8 (H, W, 3) tensor, ready for `normalize_uint8`."""
        return torch.from_numpy(np.asarray(self.pil_geometry()(image), dtype=np.uint8).copy())

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """Resized, cropped RGB image as float (3, H, W) in [0, 1]: what occlusion and stimuli work on."""
        return self.to_pixels(image).permute(2, 0, 1).float() / 255

    def normalize_uint8(self, pixels: torch.Tensor) -> torch.Tensor:
        """A (N, H, W, 3) uint8 batch as normalized float (N, 3, H, W) in channels-last memory.

        The same float operations as ToTensor + Normalize, so the values are bit-identical to
        `pil_transform`, but done once per batch instead of once per image.
        """
        batch = pixels.permute(0, 3, 1, 2).float().div_(255)
        return self.normalize(batch)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalize a batch of [0, 1] RGB images (N, 3, H, W), e.g. synthesized ones."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return pixels.sub(mean).div_(std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            interpolation=str(data["interpolation"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        )
