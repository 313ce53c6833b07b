"""`vizprobe inspect`: a summary of a stimulus package and pictures of what participants will see."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vizprobe.files import safe_name
from vizprobe.stimuli.manifest import Manifest, Trial


def summary(manifest: Manifest, min_catch_gap: float | None = None) -> str:
    kinds = Counter(t.kind for t in manifest.trials.values())
    conditions = Counter(t.condition for t in manifest.tasks.values())
    lengths = sorted({len(t.trial_ids) for t in manifest.tasks.values()})
    lines = [
        f"model {manifest.model}, image size {manifest.image_size} px, {len(manifest.images)} images",
        *(
            f"{role} units ({len(units)}): " + ", ".join(u.label for u in units)
            for role in ("main", "catch", "practice")
            if (units := manifest.units_of(role))
        ),
        f"trials: {kinds['main']} main, {kinds['catch']} catch, {kinds['practice']} practice",
        "tasks: "
        + ", ".join(f"{c} {n}" for c, n in conditions.items())
        + f" ({'/'.join(map(str, lengths))} trials each)",
    ]
    return "\n".join(lines + catch_report(manifest, min_catch_gap))


def catch_report(manifest: Manifest, min_catch_gap: float | None = None) -> list[str]:
    """Each catch trial's gap (Manifest.trial_gap) beside the main trials' median, those below `min_catch_gap`
    (default: the package's protocol's) flagged: an attentive participant may miss a catch trial that is not
    clearly easy."""
    catch = [t for t in manifest.trials.values() if t.kind == "catch"]
    if not catch:
        return []
    threshold = min_catch_gap if min_catch_gap is not None else float(manifest.settings.get("min_catch_gap", 1.0))
    gaps = {t.trial_id: manifest.trial_gap(t) for t in catch}
    if any(g is None for g in gaps.values()):
        return ["catch trials: gaps unknown (the package records no activation deviations; rebuild it to see them)"]
    main = [g for t in manifest.trials.values() if t.kind == "main" and (g := manifest.trial_gap(t)) is not None]
    lines = [
        f"catch trials: gap = (more - less activating option) / the unit's std over the scan; clearly easy at >= "
        f"{threshold:g}" + (f"; main trials' median {np.median(main):.2f}" if main else "")
    ]
    for trial_id, gap in gaps.items():
        flag = "" if gap >= threshold else f"   NOT CLEARLY EASY (< {threshold:g})"
        lines.append(f"  {trial_id}: {gap:.2f}{flag}")
    return lines


def _tile(package: Path, rel: str, size: int) -> Image.Image:
    with Image.open(package / rel) as image:
        return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def exemplar_picture(package: str | Path, trial: Trial, condition: str) -> Image.Image:
    """An exemplar trial as the experiment shows it: Left Examples, the upper and lower queries, Right Examples."""
    package = Path(package)
    ref, big, pad = 100, 190, 12
    grid = 3 * ref + 2 * pad
    width, height = 2 * grid + big + 6 * pad, 40 + max(3 * ref + 2 * pad, 2 * big + 60)
    canvas = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text(
        (pad, 10),
        f"condition: {condition}   Which image at the center matches the Right Examples better?",
        fill="black",
        font=font,
    )
    for x0, name, refs in (
        (pad, "Left Examples", trial.min_references_for(condition)),
        (grid + big + 5 * pad, "Right Examples", trial.references_for(condition)),
    ):
        draw.text((x0, 24), name, fill="black", font=font)
        for k, rel in enumerate(refs):
            row, col = divmod(k, 3)
            canvas.paste(_tile(package, rel, ref), (x0 + col * (ref + pad // 2), 38 + row * (ref + pad // 2)))
        if not refs:
            draw.text((x0, 160), "(no references in this condition)", fill=(90, 90, 90), font=font)
    for i, option in enumerate(trial.options):
        canvas.paste(_tile(package, option.image, big), (grid + 3 * pad, 38 + i * (big + 40)))
    return canvas


def trial_picture(package: str | Path, trial: Trial, condition: str) -> Image.Image:
    """The trial as the experiment shows it: references, the query, two options and the buttons."""
    package = Path(package)
    if not trial.base_image:
        return exemplar_picture(package, trial, condition)
    refs = trial.references_for(condition)
    ref, big, pad = 110, 200, 12
    width = 3 * ref + 2 * pad + 60 + 2 * big + 3 * pad
    height = 40 + max(3 * ref + 2 * pad, big + 2 * big // 2 + 90)
    canvas = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((pad, 10), f"condition: {condition}   favourite images of the unit", fill="black", font=font)
    for k, rel in enumerate(refs):
        row, col = divmod(k, 3)
        canvas.paste(_tile(package, rel, ref), (pad + col * (ref + pad // 2), 34 + row * (ref + pad // 2)))
    if not refs:
        draw.text((pad, 160), "(no reference images in this condition)", fill=(90, 90, 90), font=font)
    x0 = 3 * ref + 2 * pad + 60
    canvas.paste(_tile(package, trial.base_image, big // 2 + 40), (x0 + big - (big // 2 + 40) // 2, 34))
    draw.text((x0, 20), "query", fill="black", font=font)
    y = 34 + big // 2 + 60
    draw.text((x0, y - 16), "Which image elicits higher activation?", fill="black", font=font)
    for i, option in enumerate(trial.options):
        canvas.paste(_tile(package, option.image, big), (x0 + i * (big + pad), y))
    buttons = ["3", "2", "1", "1", "2", "3"]
    bw = (2 * big + pad) // 6
    for i, label in enumerate(buttons):
        bx = x0 + i * bw
        draw.rectangle([bx + 4, y + big + 10, bx + bw - 4, y + big + 40], outline="black", fill="white")
        draw.text((bx + bw // 2 - 3, y + big + 18), label, fill="black", font=font)
    return canvas


def activation_map_picture(package: str | Path, trial: Trial):
    """The query with its occlusion activation map and the two chosen patches marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    package = Path(package)
    values = np.load(package / trial.activation_map)
    size = Image.open(package / trial.base_image).size[0]
    patch = trial.options[0].patch[2]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].imshow(Image.open(package / trial.base_image))
    axes[0].set_title(f"query, unit {trial.unit}")
    step = (size - patch) / max(1, values.shape[0] - 1)  # cells centred on the patch offsets
    extent = (-step / 2, size - patch + step / 2, size - patch + step / 2, -step / 2)
    shown = axes[1].imshow(values, extent=extent, cmap="viridis")
    axes[1].set_title("activation with the patch at (x0, y0)")
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    correct = trial.correct
    for i, option in enumerate(trial.options):
        x, y, side = option.patch
        colour = "tab:green" if i == correct else "tab:red"
        label = "max (correct)" if i == correct else "min"
        axes[0].add_patch(Rectangle((x, y), side, side, fill=False, edgecolor=colour, linewidth=2, label=label))
        axes[1].plot([x], [y], marker="o", color=colour)
    axes[0].legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def inspect_package(
    package: str | Path, out: str | Path | None = None, min_catch_gap: float | None = None
) -> tuple[str, list[Path]]:
    """Print-ready summary and the PNGs written (one trial per condition, one activation map)."""
    package = Path(package)
    manifest = Manifest.load(package, check_images=True)
    out = Path(out) if out else package / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for condition in manifest.conditions:
        task = manifest.tasks_of(condition)[0]
        trial = next(t for t in manifest.task_trials(task.task_id) if t.kind == "main")
        path = out / f"trial_{safe_name(condition)}.png"
        trial_picture(package, trial, condition).save(path)
        written.append(path)
    with_map = next((t for t in manifest.trials.values() if t.activation_map), None)
    if with_map is not None:
        path = out / "activation_map.png"
        activation_map_picture(package, with_map).savefig(path, dpi=100)
        written.append(path)
    return summary(manifest, min_catch_gap), written
