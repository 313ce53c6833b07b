"""What a model is to vizprobe: a `ModelSpec` (builder, weights, preprocessing, aliases), one per name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from vizprobe.models.preprocessing import Preprocessing

Builder = Callable[[Path | None], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load a model and feed it images; callers never branch on the name."""

    name: str
    builder: Builder
    preprocessing: Preprocessing
    weights_source: str
    aliases: dict[str, str] = field(default_factory=dict)
    needs_weights: bool = False
    description: str = ""
    # The network (or an inference copy of it) as a chain of stages, each (path of the module whose
    # output it is, module), for incremental occlusion; None where the network is not such a chain.
    chain: Callable[[nn.Module], list[tuple[str, nn.Module]]] | None = None
    # The network takes only inputs of the preprocessing's crop size (a ViT's position embeddings): synthesis
    # resizes its transformed images to it.
    fixed_input_size: bool = False
    # Layers whose pooled features a machine observer compares images by when this network embeds them
    # (`vizprobe.observers.embedding`); empty: chosen by relative depth.
    embedding_layers: tuple[str, ...] = ()
    # The layer feature accentuation keeps close to its seed image's activations (`--accent-layer`); empty: the
    # first named block at 1/8 of the input side.
    accent_layer: str = ""
    # Layers that exist only as their parts side by side, for units numbered across them: name -> the parts
    # (layer names) in channel order. InceptionV1's `mixed4a_pre_relu:257` (the paper's feature map numbering)
    # is channel 257 - 192 of the 3x3 branch's pre-ReLU output.
    concatenations: dict[str, tuple[str, ...]] = field(default_factory=dict)
