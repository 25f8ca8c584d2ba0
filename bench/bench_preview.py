"""Pass previews: milliseconds to draw one (HTML, CSS and an SVG barcode) per style and per
barcode format, the first call (cold: Babel's locale data, the writer) and then the median
of many. Run: .venv/bin/python bench/bench_preview.py [--count 200]"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from passhouse.examples import TEMPLATES
from passhouse.pkpass.template import Template
from passhouse.preview import render_preview
from pkpass.conftest import SAMPLE_DATA, STYLES

FORMATS = ("PKBarcodeFormatQR", "PKBarcodeFormatPDF417", "PKBarcodeFormatAztec",
           "PKBarcodeFormatCode128")  # fmt: skip


def timed(
    count: int, pass_json: dict[str, object], assets: dict[str, bytes], language: str
) -> tuple[float, float, float]:
    started = time.perf_counter()
    render_preview(pass_json, assets, language=language)
    cold = time.perf_counter() - started
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        render_preview(pass_json, assets, language=language)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return (
        cold * 1000,
        statistics.median(samples) * 1000,
        samples[int(len(samples) * 0.99) - 1] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    print(f"{'style':<14}{'barcode':<10}{'lang':<6}{'first ms':>10}{'median ms':>11}{'p99 ms':>9}")
    for style in STYLES:
        pass_json, assets = Template.from_directory(TEMPLATES / style).render(SAMPLE_DATA[style])
        for barcode in FORMATS:
            pass_json["barcodes"][0]["format"] = barcode
            for language in ("en", "de"):
                cold, median, p99 = timed(args.count, pass_json, assets, language)
                name = barcode.removeprefix("PKBarcodeFormat")
                print(f"{style:<14}{name:<10}{language:<6}{cold:>10.2f}{median:>11.2f}{p99:>9.2f}")


if __name__ == "__main__":
    main()
