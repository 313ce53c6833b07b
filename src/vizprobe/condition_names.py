"""Reference conditions by name: the paper's five, in the order its figures show them, and any other a study
names. Below every stage (the manifest, the exclusion criteria, the analysis read it)."""

from __future__ import annotations

from collections.abc import Iterable

# The paper's five reference conditions, in the order its figures show them (the one list of them).
CONDITIONS = ("synthetic", "natural", "mixed", "blur", "none")
# Any condition name a responses file may carry (other studies' designs, e.g. "Min-Max-9/natural", load as they are).
CONDITION_NAME = r"[A-Za-z0-9_/-]{1,100}"


def ordered_conditions(present: Iterable[str]) -> list[str]:
    """Conditions in the paper's order, any others after them, sorted."""
    present = set(present)
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))
