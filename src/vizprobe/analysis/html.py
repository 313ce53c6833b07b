"""The self-contained report page: tables from results.json and the figures embedded as base64 PNG."""

from __future__ import annotations

from html import escape

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f4f4f4}
img{max-width:100%;margin:.5em 0}
.note{color:#666;font-size:.85em}
h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.8em}
"""


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1%}" if percent else f"{value:.3g}"
    return escape(str(value))


def _table(header: list[str], rows: list[list], percent_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v, i in percent_cols)}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(images: dict[str, str], name: str, alt: str) -> str:
    if name not in images:
        return ""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{images[name]}">'


def _accuracy_rows(table: dict) -> list[list]:
    return [
        [
            g,
            s["mean"],
            s["sem"],
            s["two_sem_low"],
            s["two_sem_high"],
            s["ci_low"],
            s["ci_high"],
            s["n_participants"],
            s["n_trials"],
        ]
        for g, s in table.items()
    ]


ACCURACY_HEADER = [
    "group",
    "accuracy",
    "SEM",
    "-2 SEM",
    "+2 SEM",
    "95% CI low",
    "95% CI high",
    "participants",
    "trials",
]


def _control(entry: dict | None) -> str | None:
    """`52.0 % [40.1 %, 63.5 %]`, with ! when its interval excludes chance."""
    if not entry:
        return None
    mark = " !" if entry.get("far_from_chance") else ""
    return f"{entry['accuracy']:.1%} [{entry['ci_low']:.1%}, {entry['ci_high']:.1%}]{mark}"


def _embedder(entry: dict) -> str | None:
    if "embedder" not in entry:
        return None
    return entry["embedder"] + (" (the studied network: reads the unit)" if entry.get("reads_unit") else "")


def render_html(results: dict, images: dict[str, str]) -> str:
    """The whole page as one string."""
    ex = results["exclusion"]
    s = results["settings"]["stats"]
    parts = [
        f"<h1>vizprobe report</h1><p class=note>source: {_fmt(results['input'].get('source'))}; "
        f"stimuli: {_fmt(results['input'].get('stimuli'))}; {results['input']['rows']} rows, "
        f"{results['input']['participants']} participants before exclusion.</p>"
    ]
    for name, entry in (results["input"].get("invalid_values") or {}).items():
        parts.append(
            f"<p class=note>{entry['count']} invalid value(s) in the optional column <code>{_fmt(name)}"
            f"</code> were treated as missing (first: {_fmt(entry['first'])}).</p>"
        )
    parts.append("<h2>Exclusion</h2>")
    parts.append(
        _table(
            ["criterion", "column", "threshold", "participants removed", "skipped because"],
            [[n, c["column"], c["threshold"], c["excluded"], c["skipped"]] for n, c in ex["criteria"].items()],
        )
    )
    counts = [[k, v["before"], v["excluded"], v["after"]] for k, v in ex["per_condition"].items()]
    parts.append(_table(["condition", "before", "excluded", "remaining"], counts))
    parts.append(
        f"<p>{ex['n_excluded']} of {ex['n_before']} participants excluded (a participant may fail several "
        "criteria); machine observers are never excluded.</p>"
    )
    left_out = ex.get("incomplete_sessions") or {}
    if left_out:
        listed = ", ".join(f"{n} {status}" for status, n in left_out.items())
        parts.append(
            f"<p>Left out before exclusion: sessions the server never saw finished ({listed}); "
            "<code>--include-incomplete</code> keeps them.</p>"
        )
    parts.append("<h2>Accuracy</h2>" + _image(images, "accuracy", "accuracy per condition"))
    parts.append(_table(ACCURACY_HEADER, _accuracy_rows(results["accuracy"]), (1, 2, 3, 4, 5, 6)))
    parts.append(
        f"<p class=note>Mean over participants of each participant's accuracy on main trials; SEM with "
        f"ddof 1; {s['ci_level']:.0%} bootstrap CI over participants ({s['ci_method']}, "
        f"{s['n_resamples']} resamples, seed {s['seed']}).</p>"
    )
    machines = [
        [f"baseline:{n}", e["accuracy"], e["ci_low"], e["ci_high"], e["n_trials"], None, None, None]
        for n, e in results["baselines"].items()
    ]
    machines += [
        [
            n,
            e["accuracy"],
            e["ci_low"],
            e["ci_high"],
            e["n_trials"],
            _control(e.get("control")),
            (e.get("catch") or {}).get("accuracy"),
            _embedder(e),
        ]
        for n, e in results["observers"].items()
    ]
    if machines:
        parts.append("<h3>Baselines and machine observers</h3>")
        parts.append(
            _table(
                [
                    "observer",
                    "accuracy",
                    "95% CI low",
                    "95% CI high",
                    "trials",
                    "control (another unit's references)",
                    "catch trials",
                    "embeds with",
                ],
                machines,
                (1, 2, 3, 6),
            )
        )
        parts.append(
            "<p class=note>Intervals: Wilson over trials. The oracle reads the correct answer from the "
            "manifest (privileged access). A control trial shows the references of another unit (of the "
            "same layer where the package has one): an observer that predicts the unit from its references "
            "should be near 50 % there; one far from chance (marked !) answers from something else. A "
            "similarity observer chooses by a decision rule whose temperature was set, not fitted to people, "
            "unless it was given a rule from <code>vizprobe observe --fit</code>: its accuracies say what it "
            "can tell apart, not yet how many people would; <code>vizprobe validate</code> checks that.</p>"
        )
        readers = [n for n, e in results["observers"].items() if e.get("reads_unit")]
        if readers:
            parts.append(
                f"<p><b>Reads the unit:</b> {escape(', '.join(readers))} embed(s) images with the studied "
                "network itself, so their accuracies read the answer off the unit's own features and say "
                "nothing about what people see.</p>"
            )
    if results["pairwise"]:
        parts.append("<h3>Pairwise tests between conditions</h3>")
        parts.append(
            _table(
                ["a", "b", "difference", "Cohen's d", "p", "p (Holm)", "significant", "n a", "n b"],
                [
                    [
                        r["a"],
                        r["b"],
                        r["difference"],
                        r["cohens_d"],
                        r["p"],
                        r["p_holm"],
                        r["significant"],
                        r["n_a"],
                        r["n_b"],
                    ]
                    for r in results["pairwise"]
                ],
                (2,),
            )
        )
        parts.append(
            "<p class=note>Two-sided permutation test on participant accuracies (difference of means), "
            "Holm-corrected over all pairs at alpha 0.05.</p>"
        )
    if "accuracy_by_expertise" in results:
        rows = [
            [f"{g} / {e}", *row[1:]]
            for g, t in results["accuracy_by_expertise"].items()
            for e, row in ((e, _accuracy_rows({e: v})[0]) for e, v in t.items())
        ]
        parts.append("<h3>By expertise</h3>" + _table(ACCURACY_HEADER, rows, (1, 2, 3, 4, 5, 6)))
    if "attention" in results:
        a = results["attention"]
        parts.append(
            f"<h3>Attention</h3><p>In {a['trials_away']} of {a['trials']} main trials ({a['participants_away']} "
            f"participant(s)) the window lost focus or the tab was hidden (median {a['away_ms_median'] / 1000:.1f} s "
            "away); nobody was excluded for it. Accuracy without those trials:</p>"
            + _table(ACCURACY_HEADER, _accuracy_rows(a["accuracy_without_away_trials"]), (1, 2, 3, 4, 5, 6))
        )
    parts.append("<h2>Error consistency</h2>" + _image(images, "kappa", "kappa matrix"))
    shared = results["settings"]["min_shared_trials"]
    counted = (
        f"every pair sharing at least {shared} trials"
        if shared is not None
        else "pairs that answered the same main trials (a participant and a machine: the participant's trials)"
    )
    parts.append(
        f"<p class=note>Cohen's kappa of correct/incorrect answers (Geirhos et al. 2020), averaged over "
        f"{counted}; the diagonal pairs different participants of the same group.</p>"
    )
    parts.append("<h2>Performance variation</h2>" + _image(images, "per_layer", "accuracy per layer"))
    parts.append(_image(images, "per_unit", "accuracy per unit"))
    parts.append("<h2>Confidence and response times</h2>" + _image(images, "confidence", "accuracy by confidence"))
    if "response_time" in results:
        parts.append(_image(images, "response_time", "response times"))
        parts.append(
            _table(
                [
                    "condition",
                    "mean of medians (s)",
                    "SEM",
                    "median correct (s)",
                    "median incorrect (s)",
                    "participants",
                ],
                [
                    [g, r["mean"], r["sem"], r["median_correct"], r["median_incorrect"], r["n_participants"]]
                    for g, r in results["response_time"].items()
                ],
            )
        )
    if results["skipped"]:
        parts.append("<h2>Skipped analyses</h2><ul>")
        parts += [f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in results["skipped"].items()]
        parts.append("</ul>")
    parts.append("<p class=note>All numbers are in results.json; figures as PNG and SVG in figures/.</p>")
    body = "\n".join(parts)
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>vizprobe report</title><style>{STYLE}</style>"
        f"</head><body>{body}</body></html>\n"
    )
