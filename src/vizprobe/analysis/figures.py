"""The report's figures, drawn with matplotlib's object API (Agg canvas, no pyplot state)."""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLOURS = {"synthetic": "#e6761a", "natural": "#1f77b4", "mixed": "#8c59b0", "blur": "#2ca02c", "none": "#7f7f7f"}
MACHINE = ["#222222", "#555555", "#888888", "#aaaaaa", "#444444", "#777777", "#999999", "#bbbbbb"]
# Conditions a study brings itself: a fixed colour per name (the same in every report).
OTHER = ["#d62728", "#17becf", "#bcbd22", "#e377c2", "#9467bd", "#8c564b", "#ff9896", "#98df8a"]


def colour(group: str, machines: Sequence[str] = ()) -> str:
    if group in COLOURS:
        return COLOURS[group]
    if group in machines:
        return MACHINE[list(machines).index(group) % len(MACHINE)]
    return OTHER[zlib.crc32(group.encode()) % len(OTHER)]


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, folder: Path, name: str) -> str:
    """Write NAME.png and NAME.svg into `folder`; return the PNG as base64 for embedding."""
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / f"{name}.svg")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    (folder / f"{name}.png").write_bytes(buffer.getvalue())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def accuracy_chart(humans: dict, machines: dict, per_participant: pd.DataFrame) -> Figure:
    """Bars: human conditions (mean over participants, 95 % bootstrap CI, dots = participants), then machines."""
    labels = list(humans) + list(machines)
    figure = new_figure(max(4.0, 0.9 * len(labels) + 1.5), 3.8)
    ax = figure.add_subplot()
    rng = np.random.default_rng(0)
    for i, group in enumerate(labels):
        entry = humans.get(group) or machines[group]
        mean = entry.get("mean", entry.get("accuracy"))
        low, high = entry["ci_low"], entry["ci_high"]
        ax.bar(i, mean, color=colour(group, list(machines)), alpha=0.85, width=0.7)
        if low is not None and np.isfinite(low):
            ax.errorbar(i, mean, yerr=np.clip([[mean - low], [high - mean]], 0, None), color="black", capsize=4, lw=1.2)
        if group in humans:
            dots = per_participant.loc[per_participant["group"] == group, "accuracy"].to_numpy(float)
            ax.scatter(i + rng.uniform(-0.2, 0.2, len(dots)), dots, s=8, color="black", alpha=0.35, lw=0, zorder=3)
        ax.text(i, 0.02, f"{mean:.0%}", ha="center", va="bottom", fontsize=8, color="white")
    ax.axhline(0.5, color="black", ls=":", lw=1)
    if machines and humans:
        ax.axvline(len(humans) - 0.5, color="grey", lw=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("proportion correct")
    ax.set_title("Accuracy on main trials (error bars: 95 % CI; dotted: chance)", fontsize=10)
    return figure


def kappa_heatmap(matrix: dict[str, dict[str, dict]]) -> Figure:
    """Annotated heat map of mean kappa (diverging, 0 = chance-level agreement) with pair counts."""
    labels = list(matrix)
    values = np.array(
        [[np.nan if matrix[a][b]["mean"] is None else matrix[a][b]["mean"] for b in labels] for a in labels],
        dtype=float,
    )
    side = max(3.5, 0.8 * len(labels) + 1.5)
    figure = new_figure(side + 1, side)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1, vmax=1)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            n = matrix[a][b]["n_pairs"]
            text = "n/a" if not np.isfinite(values[i, j]) else f"{values[i, j]:.2f}\nn={n}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    figure.colorbar(image, ax=ax, label="error consistency (Cohen's kappa)")
    ax.set_title("Error consistency, mean over participant pairs", fontsize=10)
    return figure


def by_level(table: dict[str, dict[str, dict]], order: Sequence[str], machines: Sequence[str], what: str) -> Figure:
    """Accuracy per layer or unit: humans mean +- SEM, machine observers dashed."""
    figure = new_figure(max(5.0, 0.6 * len(order) + 2.5), 3.8)
    ax = figure.add_subplot()
    x = np.arange(len(order))
    groups = list(table)
    for k, group in enumerate(groups):
        entries = [table[group].get(level) for level in order]
        mean = np.array([e["mean"] if e else np.nan for e in entries], dtype=float)
        sem = np.array([e["sem"] if e and e["sem"] is not None else np.nan for e in entries], dtype=float)
        offset = (k - (len(groups) - 1) / 2) * 0.06
        style = {"ls": "--", "marker": "s", "ms": 4} if group in machines else {"ls": "-", "marker": "o", "ms": 5}
        ax.errorbar(
            x + offset,
            mean,
            yerr=np.nan_to_num(sem),
            color=colour(group, machines),
            label=group,
            capsize=3,
            lw=1.2,
            **style,
        )
    ax.axhline(0.5, color="black", ls=":", lw=1)
    ax.set_xticks(x, order, rotation=30 if len(order) > 4 else 0, ha="right" if len(order) > 4 else "center")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("proportion correct")
    ax.set_xlabel(what)
    ax.set_title(f"Accuracy per {what} (humans: mean +- SEM over participants)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return figure


def confidence_curve(table: dict[str, dict[str, dict]]) -> Figure:
    """Accuracy per confidence rating (pooled over trials, Wilson 95 % CI) per condition."""
    figure = new_figure(5.0, 3.6)
    ax = figure.add_subplot()
    for k, (group, ratings) in enumerate(table.items()):
        levels = sorted(ratings, key=int)
        x = np.array([int(r) for r in levels]) + (k - (len(table) - 1) / 2) * 0.04
        mean = np.array([ratings[r]["accuracy"] for r in levels])
        low, high = (np.array([ratings[r][key] for r in levels]) for key in ("ci_low", "ci_high"))
        yerr = np.clip([mean - low, high - mean], 0, None)  # Wilson bounds can miss p = 0 or 1 by rounding
        ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=3, color=colour(group), label=group)
    ax.axhline(0.5, color="black", ls=":", lw=1)
    ax.set_xticks([1, 2, 3], ["1 unsure", "2", "3 sure"])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("confidence rating")
    ax.set_ylabel("proportion correct")
    ax.set_title("Accuracy by confidence (main trials)", fontsize=10)
    ax.legend(fontsize=7)
    return figure


def response_times(per_participant: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Per-participant median response time per condition (box plot with the participants as dots)."""
    figure = new_figure(max(4.0, 0.9 * len(order) + 1.5), 3.6)
    ax = figure.add_subplot()
    data = [per_participant.loc[per_participant["group"] == g, "median_rt_s"].to_numpy(float) for g in order]
    boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=False, medianprops={"color": "black"})
    for patch, group in zip(boxes["boxes"], order, strict=True):
        patch.set_facecolor(colour(group))
        patch.set_alpha(0.6)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=8, color="black", alpha=0.4, lw=0)
    ax.set_xticks(range(1, len(order) + 1), order)
    ax.set_ylabel("median response time per participant (s)")
    ax.set_title("Response times (main trials)", fontsize=10)
    return figure
