"""`vizprobe score --engine ray`: the embedding pass and the scoring of layers spread over a Ray cluster.

Embedding: the files to embed are cut into chunks that a pool of actors (each holding the embedding network,
loaded once) embeds as they come free; the driver commits each chunk as it returns, so a killed run resumes
from the committed ones. Scoring: each layer is a Ray task on its pools and its images' embeddings (matrix work).
Every worker needs the embedding network (by name) and the images at the same paths (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from vizprobe.scan.ray_engine import _require_ray


class _Embedder:
    """Ray actor: the embedding network, loaded once; a chunk of image files -> their embeddings."""

    def __init__(self, choice: dict, threads: int):
        import torch

        from vizprobe.observers.embedding import EmbedderChoice, build_embedder

        torch.set_num_threads(threads)
        choice = EmbedderChoice(**{**choice, "layers": tuple(choice["layers"])})
        self.embedder = build_embedder(choice, device="cuda" if torch.cuda.is_available() else "cpu")

    def embed(self, paths: list[str]) -> tuple[list[str], np.ndarray]:
        return paths, self.embedder.embed(paths, whole=False)


def embedded_chunks(
    choice, paths: list[str], chunk: int, address=None, workers: int | None = None, gpus_per_worker: float = 0.0
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(chunk of paths, their embeddings), in the order the workers finish them."""
    from dataclasses import asdict

    ray = _require_ray()
    from ray.util import ActorPool

    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0) // gpus_per_worker) if gpus_per_worker else 0
    workers = workers or max(1, gpus or cpus // 2)
    threads = max(1, cpus // workers)
    actor = ray.remote(num_cpus=None if gpus_per_worker else threads, num_gpus=gpus_per_worker or None)(_Embedder)
    pool = ActorPool([actor.remote(asdict(choice), threads) for _ in range(workers)])
    chunks = [paths[s : s + chunk] for s in range(0, len(paths), chunk)]
    yield from pool.map_unordered(lambda worker, part: worker.embed.remote(part), chunks)


def _score_layer(*args) -> pd.DataFrame:
    from vizprobe.score.exemplar import score_pools

    return score_pools(*args)


def scored_layers(jobs: list) -> Iterator[tuple[tuple[str, str], pd.DataFrame]]:
    """Each job (name, pools and embeddings) scored as a Ray task, yielded as they finish."""
    ray = _require_ray()
    task = ray.remote(num_cpus=1)(_score_layer)
    futures = {task.remote(*args): name for name, args in jobs}
    remaining = list(futures)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1)
        yield futures[done[0]], ray.get(done[0])
