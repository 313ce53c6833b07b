"""Objectives: what to maximize, one score per image, composable with + - and scalar *.

An objective reads a `RenderState` (the tapped layers' outputs, the images, the transformed network
inputs) and returns a (B,) tensor. Per-image scores keep images independent: in a batch that holds
several units, each image's gradient comes only from its own unit. Penalties (L1, L2, TV, blur) are
positive and are subtracted: `channel(...) - 0.05 * L2()`, as in lucid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vizprobe.units import channel_mean, split_layer


@dataclass
class RenderState:
    acts: dict[str, torch.Tensor]  # module path -> (B, C, H, W)
    images: torch.Tensor  # parameterization output, (B, 3, S, S) in [0, 1]
    inputs: torch.Tensor  # after the random transforms, before normalization


class Objective:
    """A per-image score; `layers` are the module paths it needs tapped."""

    def __init__(self, fn: Callable[[RenderState], torch.Tensor], name: str, layers: Sequence[str] = ()):
        self.fn, self.name, self.layers = fn, name, frozenset(layers)

    def __call__(self, state: RenderState) -> torch.Tensor:
        return self.fn(state)

    def __add__(self, other: Objective | float) -> Objective:
        if not isinstance(other, Objective):
            return self if other == 0 else Objective(lambda s: self(s) + other, f"{self.name} + {other}", self.layers)
        return Objective(lambda s: self(s) + other(s), f"{self.name} + {other.name}", self.layers | other.layers)

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda s: -self(s), f"-{self.name}", self.layers)

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, weight: float) -> Objective:
        weight = float(weight)
        return Objective(lambda s: weight * self(s), f"{weight:g} * {self.name}", self.layers)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _per_image_channels(
    paths: Sequence[str], channel_ids: Sequence[int], reduce
) -> Callable[[RenderState], torch.Tensor]:
    """A function giving, for image i, `reduce` of channel `channel_ids[i]` of layer `paths[i]`.

    The row and channel indices per layer are worked out once here, not on every step.
    """
    plan = []
    for path in sorted(set(paths)):
        rows = [i for i, p in enumerate(paths) if p == path]
        plan.append((path, torch.tensor(rows), torch.tensor([channel_ids[i] for i in rows])))

    def fn(state: RenderState) -> torch.Tensor:
        out = torch.zeros(len(paths), device=state.images.device)
        for path, rows, chans in plan:
            rows, chans = rows.to(out.device), chans.to(out.device)
            out = out.index_put((rows,), reduce(state.acts[path][rows, chans]))
        return out

    return fn


def channels(paths: Sequence[str], channel_ids: Sequence[int]) -> Objective:
    """Image i maximizes the spatial mean of channel `channel_ids[i]` of layer `paths[i]` (the unit activation)."""
    paths, channel_ids = list(paths), [int(c) for c in channel_ids]
    return Objective(
        _per_image_channels(paths, channel_ids, lambda m: channel_mean(m[:, None])[:, 0]), "channels", paths
    )


def channel(path: str, channel_id: int, batch: int) -> Objective:
    """Every image of a batch maximizes one unit (lucid's `channel`)."""
    return channels([path] * batch, [channel_id] * batch)


def neurons(paths: Sequence[str], channel_ids: Sequence[int]) -> Objective:
    """Image i maximizes the centre position of its unit's channel (lucid's `neuron`)."""
    paths, channel_ids = list(paths), [int(c) for c in channel_ids]

    def centre(maps: torch.Tensor) -> torch.Tensor:
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]

    return Objective(_per_image_channels(paths, channel_ids, centre), "neurons", paths)


def _normalized_grams(acts: torch.Tensor) -> torch.Tensor:
    b, c, h, w = acts.shape
    flat = acts.reshape(b, c, h * w)
    grams = flat @ flat.transpose(1, 2) / (h * w)
    return F.normalize(grams.reshape(b, -1), dim=1)


def gram_similarity(acts: torch.Tensor) -> torch.Tensor:
    """(n, n) cosine similarities of the images' Gram matrices at a layer."""
    grams = _normalized_grams(acts)
    return grams @ grams.T


def diversity(paths: Sequence[str], groups: Sequence[int]) -> Objective:
    """Images of the same group (unit) differ: minus the sum of their Gram-matrix cosine similarities
    to the other images of the group, at the group's layer (for a direction unit `LAYER:NAME:K`, at LAYER, the
    channels the directions read: a set of one direction has a 1 x 1 Gram matrix, the same for every image).

    Summed over a group this is lucid's `diversity` (times the group size, like lucid's batch-mean
    `channel`), so lucid's weights carry over: `channels(...) - 1e2 * similarity` there is
    `channels(...) + 1e2 * diversity(...)` here.
    """
    paths, groups = [split_layer(p)[0] for p in paths], list(groups)

    def fn(state: RenderState) -> torch.Tensor:
        out = torch.zeros(len(groups), device=state.images.device)
        for group in sorted(set(groups)):
            rows = [i for i, g in enumerate(groups) if g == group]
            if len(rows) < 2:
                continue
            sims = gram_similarity(state.acts[paths[rows[0]]][rows])
            off_diagonal = sims.sum(dim=1) - sims.diagonal()
            out = out.index_put((torch.tensor(rows, device=out.device),), -off_diagonal)
        return out

    return Objective(fn, "diversity", paths)


def mean_over_copies(objective: Objective, copies: int) -> Objective:
    """`objective` of a batch whose image i was seen as `copies` crops (rows i * copies ..), averaged per image."""
    if copies == 1:
        return objective
    return Objective(lambda s: objective(s).view(-1, copies).mean(dim=1), f"mean of {objective.name}", objective.layers)


def companion_distance(layer: str, copies: int = 1) -> Objective:
    """faccent's `l2_compare`: at `layer`, the L2 distance over channels between each image and its companion
    (the seed image, transformed alike and run after the batch: rows B * copies ..), averaged over positions and
    the image's copies. Feature accentuation keeps an image's features at that layer close to its seed's."""

    def fn(s: RenderState) -> torch.Tensor:
        acts = s.acts[layer]
        half = acts.shape[0] // 2
        distance = (acts[:half] - acts[half:]).norm(dim=1)  # (B * copies, H, W)
        return distance.flatten(1).mean(dim=1).view(-1, copies).mean(dim=1)

    return Objective(fn, f"distance to the seed at {layer}", [layer])


class Balanced(Objective):
    """`main - alpha * w_i * penalty`, with image i's weight w_i = |d main_i / d params| / |d penalty_i / d params|
    (sums of absolute gradients) measured once at the start, as faccent balances its regularizer: alpha 1 makes
    both pull equally hard at first. `render` calls `calibrate` before its first step."""

    def __init__(self, main: Objective, penalty: Objective, alpha: float):
        self.main, self.penalty, self.alpha = main, penalty, float(alpha)
        self.weights: torch.Tensor | None = None
        name = f"{main.name} - {alpha:g} * balanced {penalty.name}"
        super().__init__(self._value, name, main.layers | penalty.layers)

    def _value(self, s: RenderState) -> torch.Tensor:
        if self.weights is None:
            raise RuntimeError("a Balanced objective is weighed by `calibrate` before use (render does it)")
        return self.main(s) - self.alpha * self.weights.to(s.images.device) * self.penalty(s)

    def calibrate(self, gradient_size: Callable[[Objective], torch.Tensor]) -> None:
        """Set the weights from `gradient_size(objective)`, (B,) sums of absolute parameter gradients."""
        self.weights = gradient_size(self.main) / gradient_size(self.penalty).clamp_min(1e-30)


def L1(constant: float = 0.5) -> Objective:
    """Mean absolute deviation of pixels from `constant`, per image."""
    return Objective(lambda s: (s.images - constant).abs().mean(dim=(1, 2, 3)), "L1")


def L2(constant: float = 0.5) -> Objective:
    """Root mean square deviation of pixels from `constant`, per image (penalizes intense pixels)."""
    return Objective(lambda s: (s.images - constant).pow(2).mean(dim=(1, 2, 3)).add(1e-12).sqrt(), "L2")


def total_variation() -> Objective:
    """Mean absolute difference of neighbouring pixels, per image (penalizes high-frequency noise)."""

    def fn(s: RenderState) -> torch.Tensor:
        dx = (s.images[..., :, 1:] - s.images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        dy = (s.images[..., 1:, :] - s.images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        return dx + dy

    return Objective(fn, "TV")


def blur_input_each_step() -> Objective:
    """Squared distance of each image to a (fixed) blurred copy of itself: pulls images towards smoothness."""
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)

    def fn(s: RenderState) -> torch.Tensor:
        with torch.no_grad():
            blurred = F.conv2d(F.pad(s.images, (1, 1, 1, 1), mode="replicate"), kernel.to(s.images), groups=3)
        return 0.5 * (s.images - blurred).pow(2).mean(dim=(1, 2, 3))

    return Objective(fn, "blur")


def closeness(seed_images: torch.Tensor) -> Objective:
    """Mean squared pixel distance of image i to `seed_images[i]` (feature accentuation's penalty, Hamblin
    et al. 2024: the image may change only as much as the unit's gain repays)."""

    def fn(s: RenderState) -> torch.Tensor:
        return (s.images - seed_images.to(s.images)).pow(2).mean(dim=(1, 2, 3))

    return Objective(fn, "closeness")


PATCH = 8  # pixels per side of the patches whose mean colours the colour prior compares
PROJECTIONS = 32  # random directions of the sliced Wasserstein distance


def patch_colours(images: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """(B, 3, S, S) -> (B, P, 3): the mean colour of each `patch` x `patch` patch."""
    return F.avg_pool2d(images, patch).flatten(2).transpose(1, 2)


def sliced_wasserstein(points: torch.Tensor, reference: torch.Tensor, projections: int = PROJECTIONS) -> torch.Tensor:
    """Per row b, the sliced 2-Wasserstein distance (squared, averaged over fixed random directions) between
    the point sets `points[b]` (P, 3) and `reference[b]` (Q, 3), comparing their quantiles at P levels."""
    directions = F.normalize(torch.randn(3, projections, generator=torch.Generator().manual_seed(0)), dim=0)
    ours = torch.sort(points @ directions.to(points), dim=1).values  # (B, P, K)
    theirs = torch.sort(reference.to(points) @ directions.to(points), dim=1).values  # (B, Q, K)
    levels = (torch.arange(ours.shape[1], device=points.device) + 0.5) / ours.shape[1]
    index = (levels * theirs.shape[1]).long().clamp_max(theirs.shape[1] - 1)
    return (ours - theirs[:, index]).pow(2).mean(dim=(1, 2))


def colour_statistics(reference_colours: torch.Tensor) -> Objective:
    """Sliced Wasserstein distance between image i's patch colours and `reference_colours[i]` (Q, 3), the
    patch colours of its unit's top natural images: a prior toward realistic patch-level colour
    statistics, one of the priors Nguyen, Yosinski and Clune (2019) survey for feature visualization."""
    return Objective(lambda s: sliced_wasserstein(patch_colours(s.images), reference_colours), "colour statistics")


def centre_bias(sigma: float = 0.25, patch: int = PATCH) -> Objective:
    """Low-frequency energy away from the image centre: the squared deviation of each `patch` x `patch` mean
    colour from the image's mean colour, weighted by 1 - a centred Gaussian (standard deviation `sigma` of
    the side). A global-coherence prior toward one object in the middle rather than a texture repeated to
    the borders (the centre-biased regularization of Nguyen, Yosinski and Clune 2016)."""

    def fn(s: RenderState) -> torch.Tensor:
        means = F.avg_pool2d(s.images, patch)  # (B, 3, h, w)
        h, w = means.shape[-2:]
        y = (torch.arange(h, device=means.device) + 0.5) / h - 0.5
        x = (torch.arange(w, device=means.device) + 0.5) / w - 0.5
        outside = 1 - torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
        deviation = (means - means.mean(dim=(2, 3), keepdim=True)).pow(2).sum(dim=1)  # (B, h, w)
        return (outside * deviation).mean(dim=(1, 2))

    return Objective(fn, "centre bias")
