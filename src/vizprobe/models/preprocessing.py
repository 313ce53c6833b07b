"""A model's exact input preprocessing: resize the shorter side, centre-crop, normalize."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalize a batch of [0, 1] RGB images (N, 3, H, W), e.g. synthesized ones."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std

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
