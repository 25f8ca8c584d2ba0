"""The documentation stands on its own: every relative link points at a file inside the
repository that exists, and none leads outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "bench" / "README.md",
        *ROOT.glob("docs/**/*.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Paths quoted in backticks that climb a folder (`../shared/x.md`): they must exist too.
OUTSIDE = re.compile(r"`(\.\./[^`]*)`")


def links(page: Path) -> list[str]:
    return [
        target.split("#")[0]
        for target in LINK.findall(page.read_text())
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_stays_inside_the_repository_and_exists(page: Path) -> None:
    problems = []
    for target in links(page):
        resolved = (page.parent / target).resolve()
        if not resolved.is_relative_to(ROOT.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
    for quoted in OUTSIDE.findall(page.read_text()):
        resolved = (page.parent / quoted).resolve()
        if not resolved.is_relative_to(ROOT.resolve()) or not resolved.exists():
            problems.append(f"{quoted}: not a file of the repository")

    assert problems == []


def test_a_link_outside_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("see [design](../shared/design.md) and [top](#top)")

    assert links(page) == ["../shared/design.md"]
