"""CPU cost of a Google card preview next to the Apple preview of the same pass: the class
and object rendered as the sync renders them, and the card drawn (QR barcode, logo).

    .venv/bin/python bench/bench_preview_google.py [ROUNDS]

Prints previews per CPU-second (process time, so other load on the machine counts less);
two alternating runs of each, A/B in one process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from passhouse.examples import TEMPLATES
from passhouse.issuing import google_wallet
from passhouse.pkpass.template import Template
from passhouse.preview import render_preview
from passhouse.previewing import google_card

DATA = {"serial": "CARD-0001", "points": 1200, "balance": 25.5, "name": "Ada"}


def main(rounds: int) -> None:
    template = Template.from_directory(TEMPLATES / "storeCard")
    images = google_wallet._best_images(template.assets)
    rendered, files = template.render(DATA)
    section = {"issuer_id": "3388000000012345678", "type": "loyalty"}

    def apple() -> None:
        render_preview(rendered, files)

    def google() -> None:
        google_card(
            section,
            template.pass_json,
            Template(template.pass_json, {}),
            DATA,
            None,
            images,
            template_id=3,
            pass_type_id="pass.bench",  # noqa: S106 - an id, not a password
            serial_number="s1",
            voided=False,
            public_url="https://passes.example",
            language="en",
        )

    runs: list[tuple[str, Callable[[], None]]] = [("apple", apple), ("google", google)] * 2
    for name, run in runs:
        run()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"{name}: {rounds / cpu:.0f} per CPU-second "
            f"({cpu / rounds * 1000:.2f} ms CPU, {wall / rounds * 1000:.2f} ms wall)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
