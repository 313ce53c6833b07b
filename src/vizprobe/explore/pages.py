"""The explorer's HTML: an index of every unit and a page per unit. Plain HTML that works without JavaScript
(the index's filter is the one script) and from the file system: every link is relative."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

CSS = "assets/style.css"
SCRIPT = "assets/filter.js"


@dataclass
class Picture:
    """An image on a page: its thumbnail and full-size copy (None: the source was missing) and a caption."""

    files: tuple[str, str] | None
    caption: str
    alt: str


@dataclass
class UnitPage:
    """What a unit's page shows."""

    unit: str  # canonical
    label: str
    layer: str
    href: str  # relative to the site root
    score: dict | None = None  # a scores.csv row
    top: list[Picture] = field(default_factory=list)
    bottom: list[Picture] = field(default_factory=list)
    visualizations: dict[str, list[Picture]] = field(default_factory=dict)  # method -> pictures
    occlusion: list[Picture] = field(default_factory=list)
    occlusion_note: str = ""
    histogram: str = ""  # inline SVG
    previous: UnitPage | None = None
    next: UnitPage | None = None


def _e(text: object) -> str:
    return html.escape(str(text))


def _page(title: str, body: str, root: str, script: bool = False) -> str:
    tail = f'<script src="{root}{SCRIPT}"></script>' if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="{root}{CSS}"></head>'
        f"<body>{body}{tail}</body></html>\n"
    )


def _figure(picture: Picture, root: str) -> str:
    if picture.files is None:
        return (
            f'<figure><div class="missing" role="img" aria-label="{_e(picture.alt)} (file missing)">missing</div>'
            f"<figcaption>{_e(picture.caption)}</figcaption></figure>"
        )
    thumb, full = picture.files
    return (
        f'<figure><a href="{root}{full}"><img src="{root}{thumb}" alt="{_e(picture.alt)}" loading="lazy"></a>'
        f"<figcaption>{_e(picture.caption)}</figcaption></figure>"
    )


def _gallery(title: str, pictures: list[Picture], root: str, level: int = 2) -> str:
    if not pictures:
        return ""
    figures = "".join(_figure(p, root) for p in pictures)
    return f'<section><h{level}>{_e(title)}</h{level}><div class="gallery">{figures}</div></section>'


def score_text(row: dict | None) -> str:
    if row is None:
        return "not scored"
    return f"{row['score']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _number(row: dict, key: str) -> str:
    value = row.get(key)
    return "-" if value is None or value != value else f"{value:.3f}"


def unit_page(page: UnitPage, model: str, scores_note: str) -> str:
    """A unit's page: score, exemplars, visualizations, occlusion heatmaps, activation histogram, neighbours."""
    root = "../" * page.href.count("/")
    nav = [f'<a href="{root}index.html">all units</a>']
    if page.previous is not None:
        nav.append(f'<a href="{root}{page.previous.href}" rel="prev">previous: {_e(page.previous.label)}</a>')
    if page.next is not None:
        nav.append(f'<a href="{root}{page.next.href}" rel="next">next: {_e(page.next.label)}</a>')
    score = page.score
    if score is not None:
        facts = [
            ("score (exemplar task)", score_text(score)),
            ("control (another unit's references)", f"{score['control']:.3f}" if "control" in score else "-"),
            ("control unit", score.get("control_unit", "-")),
            ("observer accuracy", _number(score, "accuracy")),
            ("colour baseline: score", _number(score, "colour_score")),
            ("colour baseline: accuracy", _number(score, "colour_accuracy")),
            ("tasks", score.get("tasks", "-")),
        ]
    else:
        facts = [("score", "not scored")]
    table = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    parts = [
        f'<header><nav aria-label="units">{" | ".join(nav)}</nav>'
        f"<h1>{_e(page.label)}</h1><p>{_e(model)}, layer {_e(page.layer)}</p></header><main>",
        f'<section><h2>Score</h2><table class="facts">{table}</table><p class="note">{_e(scores_note)}</p></section>',
        _gallery("Most activating images", page.top, root),
        _gallery("Least activating images", page.bottom, root),
    ]
    for method, pictures in page.visualizations.items():
        parts.append(_gallery(f"Feature visualizations: {method}", pictures, root))
    if page.occlusion:
        title = "Occlusion heatmaps (bright: occluding there lowers the activation most)"
        parts.append(_gallery(title, page.occlusion, root))
    elif page.occlusion_note:
        parts.append(f'<section><h2>Occlusion</h2><p class="note">{_e(page.occlusion_note)}</p></section>')
    if page.histogram:
        parts.append(f"<section><h2>Activation over the scanned images</h2>{page.histogram}</section>")
    parts.append("</main>")
    return _page(f"{page.label} - {model}", "".join(parts), root)


def index_page(model: str, layers: list[tuple[str, str, list[UnitPage]]], summary: str, missing: list[str]) -> str:
    """The index: each layer's score histogram and its units sorted by score, with a thumbnail of the top
    exemplar; a filter by layer, score range and unit id (the page's one script)."""
    options = "".join(f'<option value="{_e(name)}">{_e(name)}</option>' for name, _, _ in layers)
    form = (
        '<form class="filter" role="search" aria-label="filter units" onsubmit="return false">'
        '<label for="f-layer">layer</label><select id="f-layer"><option value="">all</option>'
        f"{options}</select>"
        '<label for="f-min">score from</label><input id="f-min" type="number" step="0.01" min="0" max="1" value="0">'
        '<label for="f-max">to</label><input id="f-max" type="number" step="0.01" min="0" max="1" value="1">'
        '<label for="f-unit">unit</label><input id="f-unit" type="search" placeholder="e.g. _blocks.8:12">'
        '<output id="f-count" aria-live="polite"></output></form>'
    )
    sections = []
    for name, histogram, pages in layers:
        rows = []
        for page in pages:
            score = page.score["score"] if page.score else None
            thumb = page.top[0].files[0] if page.top and page.top[0].files else None
            image = (
                f'<img src="{thumb}" alt="top image of {_e(page.label)}" width="64" height="64" loading="lazy">'
                if thumb
                else ""
            )
            control = _number(page.score, "control") if page.score else "-"
            accuracy = _number(page.score, "accuracy") if page.score else "-"
            colour = _number(page.score, "colour_accuracy") if page.score else "-"
            rows.append(
                f'<tr data-layer="{_e(name)}" data-unit="{_e(page.unit)} {_e(page.label)}" '
                f'data-score="{"" if score is None else f"{score:.4f}"}">'
                f'<td><a href="{page.href}">{_e(page.label)}</a></td><td>{_e(score_text(page.score))}</td>'
                f"<td>{accuracy}</td><td>{colour}</td><td>{control}</td><td>{image}</td></tr>"
            )
        sections.append(
            f'<section class="layer" data-layer="{_e(name)}"><h2>{_e(name)} <small>({len(pages)} units)</small>'
            f"</h2>{histogram}<table class='units'><caption>units of {_e(name)}, highest score first</caption>"
            "<thead><tr><th scope='col'>unit</th><th scope='col'>score [95% CI]</th>"
            "<th scope='col'>accuracy</th><th scope='col'>colour accuracy</th>"
            "<th scope='col'>control</th><th scope='col'>top image</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )
    lost = ""
    if missing:
        items = "".join(f"<li>{_e(m)}</li>" for m in missing[:50])
        lost = f'<section><h2>Missing image files</h2><ul class="note">{items}</ul></section>'
    body = (
        f"<header><h1>Units of {_e(model)}</h1><p>{_e(summary)}</p></header><main>{form}"
        f"{''.join(sections)}{lost}</main>"
    )
    return _page(f"Units of {model}", body, "", script=True)
