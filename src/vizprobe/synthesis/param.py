"""Image parameterizations: free variables -> a batch of RGB images in [0, 1].

`PixelParam` is plain pixels (gradient ascent on them gives the high-frequency "rubbish" of
adversarial patterns); `FourierParam` scales a random spectrum by 1/f^decay and decorrelates colour,
which whitens the gradient and is the main prior behind lucid-style images (started from natural images
by `FourierParam.from_images`, it is feature accentuation's parameterization, Hamblin et al. 2024);
`MacoParam` fixes the Fourier magnitude to natural images' and optimizes only the phase (MACO, Fel et al.
2023); `GeneratorParam` optimizes the latent code of any generator network (Nguyen et al. 2016).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizprobe.synthesis.rng import ImageRNG

# Square root of ImageNet's colour correlation matrix (lucid), normalized by its largest column norm.
_COLOR_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = _COLOR_SVD_SQRT / _COLOR_SVD_SQRT.norm(dim=0).max()
FOURIER_GAIN = 4.0  # FourierParam divides the inverse FFT by this (lucid's)
ACCENTUATION_GAIN = 5.0  # faccent's `desaturation` of its Fourier parameterization


def to_valid_rgb(image: torch.Tensor, decorrelate: bool) -> torch.Tensor:
    """(B, 3, H, W) unconstrained values -> colours in [0, 1] (optionally through decorrelated space)."""
    if decorrelate:
        image = torch.einsum("bchw,dc->bdhw", image, COLOR_CORRELATION.to(image))
    return torch.sigmoid(image)


class PixelParam(nn.Module):
    """Each pixel is a free variable (the baseline without a frequency prior)."""

    def __init__(self, seeds: list[int], size: int, std: float = 0.01, decorrelate: bool = False):
        super().__init__()
        rng = ImageRNG(seeds)
        self.pixels = nn.Parameter(rng.normal(stream=1, shape=(3, size, size)) * std)
        self.decorrelate = decorrelate

    def forward(self) -> torch.Tensor:
        return to_valid_rgb(self.pixels, self.decorrelate)


def _rfft2d_freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class FourierParam(nn.Module):
    """A spectrum scaled by 1/f^decay, inverse-FFT'd, colour-decorrelated and squashed to [0, 1]."""

    def __init__(
        self,
        seeds: list[int],
        size: int,
        std: float = 0.01,
        decay: float = 1.0,
        decorrelate: bool = True,
        gain: float = FOURIER_GAIN,
    ):
        super().__init__()
        self.gain = gain
        rng = ImageRNG(seeds)
        freqs = _rfft2d_freqs(size, size)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay  # with norm="ortho", as lucid's sqrt(wh) scaling
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32)[None, None], persistent=False)
        self.spectrum = nn.Parameter(rng.normal(stream=2, shape=(3, *freqs.shape, 2)) * std)
        self.size = size
        self.decorrelate = decorrelate

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / self.gain
        return to_valid_rgb(image, self.decorrelate)

    @classmethod
    def from_images(
        cls, images: torch.Tensor, seeds: list[int], decay: float = 1.0, gain: float = FOURIER_GAIN
    ) -> FourierParam:
        """The parameterization whose images are `images` (B, 3, S, S) in [0, 1] (up to a clamp to
        [1e-3, 1 - 1e-3]): the inverse of `forward`, so optimization starts from natural images."""
        param = cls(seeds, images.shape[-1], decay=decay, gain=gain)
        logits = torch.logit(images.float().clamp(1e-3, 1 - 1e-3))
        decorrelated = torch.einsum("bdhw,cd->bchw", logits, torch.linalg.inv(COLOR_CORRELATION))
        spectrum = torch.fft.rfft2(decorrelated * gain, norm="ortho") / param.scale
        param.spectrum.data = torch.view_as_real(spectrum).contiguous()
        return param


def natural_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(3, S, S // 2 + 1): the mean Fourier magnitude of natural `images` (N, 3, S, S) in [0, 1], in the
    decorrelated colour space MACO optimizes in (Fel et al. 2023 measure it on ImageNet). The zero frequency is
    kept, as in the authors' spectra: its phase is optimized like the others, so each channel's mean is free
    (a mean-centred spectrum pins every image's mean colour to grey)."""
    decorrelated = torch.einsum("bdhw,cd->bchw", images.float(), torch.linalg.inv(COLOR_CORRELATION))
    return torch.fft.rfft2(decorrelated, norm="ortho").abs().mean(dim=0)


def resize_spectrum(spectrum: torch.Tensor, size: int) -> torch.Tensor:
    """A (3, S, S // 2 + 1) magnitude spectrum at image side `size` (bilinear, antialiased), as float32."""
    if spectrum.shape == (3, size, size // 2 + 1):
        return spectrum.float()
    return F.interpolate(
        spectrum[None].float(), size=(size, size // 2 + 1), mode="bilinear", align_corners=False, antialias=True
    )[0]


class MacoParam(nn.Module):
    """MACO (Fel et al. 2023): the image's Fourier magnitude is fixed to `spectrum` (measured on natural
    images, `natural_spectrum`) and only the phase is optimized; as in the authors' implementation (Horama's
    `maco_preconditioner`) the phase is standardized, the image standardized, colour recorrelated and squashed
    to [0, 1]."""

    def __init__(self, seeds: list[int], size: int, spectrum: torch.Tensor):
        super().__init__()
        self.register_buffer("magnitude", resize_spectrum(spectrum, size)[None], persistent=False)
        self.phase = nn.Parameter(ImageRNG(seeds).normal(stream=4, shape=(3, size, size // 2 + 1)))
        self.size = size

    def forward(self) -> torch.Tensor:
        phase = self.phase - self.phase.mean(dim=(1, 2, 3), keepdim=True)
        phase = phase / (self.phase.std(dim=(1, 2, 3), keepdim=True) + 1e-4)
        spectrum = torch.polar(self.magnitude.expand_as(phase), phase)
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        mean, std = image.mean(dim=(1, 2, 3), keepdim=True), image.std(dim=(1, 2, 3), keepdim=True)
        return to_valid_rgb((image - mean) / (std + 1e-4), decorrelate=True)


class GeneratorParam(nn.Module):
    """Optimize the latent codes of a generator `G: (B, *latent_shape) -> (B, 3, H, W)`.

    `output_range` is the range of G's outputs (e.g. (-1, 1) for tanh generators); images are mapped
    to [0, 1] and resized to `size`. The generator's own weights stay fixed.
    """

    def __init__(
        self,
        generator: nn.Module,
        seeds: list[int],
        latent_shape: tuple[int, ...],
        size: int,
        std: float = 1.0,
        output_range: tuple[float, float] = (-1.0, 1.0),
    ):
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.latent = nn.Parameter(ImageRNG(seeds).normal(stream=3, shape=latent_shape) * std)
        self.size = size
        self.low, self.high = output_range

    def forward(self) -> torch.Tensor:
        image = self.generator(self.latent)
        image = ((image - self.low) / (self.high - self.low)).clamp(0, 1)
        if image.shape[-1] != self.size or image.shape[-2] != self.size:
            image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return image


PARAMS = {"fourier": FourierParam, "pixel": PixelParam, "maco": MacoParam}
