"""Passes built and signed per second in one process.

The pass: a store card pass.json with placeholders, three small PNGs (icon, icon@2x, logo) and
one localization (en.lproj/pass.strings). Each iteration renders the template with new data,
validates, zips and signs, exactly as the server does for a new pass version.

    .venv/bin/python bench/bench_pkpass.py [--count N]
"""

from __future__ import annotations

import argparse
import platform
import struct
import time
import zlib
from collections.abc import Callable

from passhouse.pkpass.bundle import build_pkpass
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.pkpass.pass_json import validate_pass_json
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.strings import encode_strings
from passhouse.pkpass.template import Template


def make_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = (b"\x00" + b"\x20\x60\xa0" * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_template() -> Template:
    pass_json = {
        "formatVersion": 1,
        "passTypeIdentifier": "pass.bench.passhouse",
        "teamIdentifier": "BENCHTEAM1",
        "serialNumber": "{{serial}}",
        "organizationName": "Passhouse Coffee",
        "description": "COFFEE_CARD",
        "webServiceURL": "https://passes.example.com/",
        "authenticationToken": "{{token}}",
        "backgroundColor": "rgb(60, 65, 76)",
        "foregroundColor": "rgb(255, 255, 255)",
        "barcodes": [
            {"format": "PKBarcodeFormatQR", "message": "{{serial}}", "messageEncoding": "utf-8"}
        ],
        "storeCard": {
            "headerFields": [{"key": "points", "label": "POINTS", "value": "{{points}}"}],
            "primaryFields": [
                {
                    "key": "balance",
                    "label": "BALANCE",
                    "value": "{{balance}}",
                    "currencyCode": "EUR",
                    "changeMessage": "Balance is now %@",
                }
            ],
            "secondaryFields": [{"key": "name", "label": "NAME", "value": "{{name}}"}],
            "backFields": [{"key": "terms", "label": "TERMS", "value": "TERMS_TEXT"}],
        },
    }
    assets = {
        "icon.png": make_png(29, 29),
        "icon@2x.png": make_png(58, 58),
        "logo.png": make_png(160, 50),
        "en.lproj/pass.strings": encode_strings(
            {
                "COFFEE_CARD": "Coffee card",
                "POINTS": "Points",
                "BALANCE": "Balance",
                "NAME": "Name",
                "TERMS": "Terms",
                "TERMS_TEXT": "Valid in all our shops.",
            }
        ),
    }
    return Template(pass_json, assets, name="bench")


def rate(label: str, count: int, action: Callable[[int], object]) -> float:
    action(-1)  # warm up
    started, cpu_started = time.perf_counter(), time.process_time()
    for index in range(count):
        action(index)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    per_second = count / elapsed
    print(f"{label:<34} {per_second:>9,.0f}/s  ({elapsed * 1000 / count:.3f} ms each, "
          f"{count / cpu:,.0f}/CPU-s)")  # fmt: skip
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()

    credentials = make_dev_credentials("pass.bench.passhouse", "BENCHTEAM1")
    signer = PassSigner.from_pem(
        credentials.cert_pem, credentials.key_pem, credentials.wwdr_cert_pem
    )
    template = make_template()

    def data(index: int) -> dict[str, object]:
        return {
            "serial": f"BENCH-{index:08d}",
            "token": f"token-{index:016d}",
            "points": index,
            "balance": index / 100,
            "name": "Ada Lovelace",
        }

    sample_json, sample_assets = template.render(data(0))
    manifest = b'{"icon.png":"' + b"0" * 40 + b'"}'
    size = len(build_pkpass(sample_json, sample_assets, signer))
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{args.count} iterations, pass size {size:,} bytes")  # fmt: skip

    rate("sign manifest only (PKCS#7)", args.count, lambda _: signer.sign(manifest))
    rate("validate pass.json only", args.count, lambda _: validate_pass_json(sample_json))
    rate("render template only", args.count, lambda index: template.render(data(index)))
    full = rate(
        "render + build + sign (full pass)",
        args.count,
        lambda index: build_pkpass(*template.render(data(index)), signer),
    )
    print(f"target: >= 400 passes/s single process -> {'OK' if full >= 400 else 'MISSED'}")


if __name__ == "__main__":
    main()
