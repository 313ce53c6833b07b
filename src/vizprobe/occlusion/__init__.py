"""Occlusion: a unit's activation for every position of a square patch over an image.

`patches` (size, offsets, occluded copies), `sweep` (the exact map, all channels of a layer at once),
`search` (the coarse-to-fine fast search) and `incremental` (early stages recomputed only around the patch).
"""

from vizprobe.occlusion.patches import grid, occlude, patch_means, patch_size
from vizprobe.occlusion.search import SearchResult, coarse_to_fine
from vizprobe.occlusion.sweep import Occluder, OcclusionMap

__all__ = [
    "OcclusionMap",
    "Occluder",
    "SearchResult",
    "coarse_to_fine",
    "grid",
    "occlude",
    "patch_means",
    "patch_size",
]
