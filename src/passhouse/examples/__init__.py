"""Example templates shipped in the package: one per pass style, with images and an
English and a German localization. `passhouse template add --example NAME` adds one; the
test suite builds its golden passes from the same folders."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def example_names() -> list[str]:
    """The examples by the name the CLI takes (the folder name in lower case)."""
    return sorted(path.name.lower() for path in TEMPLATES.iterdir() if path.is_dir())


def example_path(name: str) -> Path | None:
    """The folder of an example, its name matched without regard to case; or None."""
    for path in TEMPLATES.iterdir():
        if path.is_dir() and path.name.lower() == name.lower():
            return path
    return None
