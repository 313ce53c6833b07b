"""MkDocs hook: the site's front page is README.md (one text for both), its links made relative to docs/."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
OUTSIDE = ("CONTRIBUTING.md", "CHANGELOG.md", "CITATION.cff", "LICENSE")


def front_page() -> str:
    text = README.read_text()
    text = text.replace("](docs/img/", "](img/").replace("[docs/](docs/)", "`docs/`").replace("](docs/", "](")
    text = text.replace("[benchmarks/README.md](benchmarks/README.md)", "[benchmarks](benchmarks.md)")
    return re.sub(r"\[([^\]]+)\]\((" + "|".join(map(re.escape, OUTSIDE)) + r")\)", r"`\2`", text)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    return front_page() if page.file.src_uri == "index.md" else markdown
