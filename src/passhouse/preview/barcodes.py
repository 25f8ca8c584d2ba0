"""Barcodes drawn for real, as SVG, by zxing-cpp's writer (zint inside): the same symbol a
scanner reads from the phone, scannable from a screen."""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass

import zxingcpp

# Wallet's formats, by the writer's name for them.
_FORMATS = {
    "PKBarcodeFormatQR": zxingcpp.BarcodeFormat.QRCode,
    "PKBarcodeFormatPDF417": zxingcpp.BarcodeFormat.PDF417,
    "PKBarcodeFormatAztec": zxingcpp.BarcodeFormat.Aztec,
    "PKBarcodeFormatCode128": zxingcpp.BarcodeFormat.Code128,
    "PKBarcodeFormatCode39": zxingcpp.BarcodeFormat.Code39,
    "PKBarcodeFormatCodabar": zxingcpp.BarcodeFormat.Codabar,
    "PKBarcodeFormatEAN13": zxingcpp.BarcodeFormat.EAN13,
    "PKBarcodeFormatI2of5": zxingcpp.BarcodeFormat.ITF,
}
SQUARE = {"PKBarcodeFormatQR", "PKBarcodeFormatAztec"}
LINEAR = {
    "PKBarcodeFormatCode128",
    "PKBarcodeFormatCode39",
    "PKBarcodeFormatCodabar",
    "PKBarcodeFormatEAN13",
    "PKBarcodeFormatI2of5",
}
# A message longer than this is not drawn: Wallet's own symbols hold far less, and the
# writer's time grows with it.
MAX_MESSAGE_BYTES = 2_000
_SIZE = re.compile(r'<svg width="(\d+)" height="(\d+)"')
_BODY = re.compile(r"<g id=\"barcode\".*?</g>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class DrawnBarcode:
    svg: str | None  # None: could not be drawn, `problem` says why
    width: int = 0
    height: int = 0
    problem: str | None = None


def _payload(message: str, encoding: str) -> str | bytes:
    """The bytes Wallet puts in the symbol: the message in its messageEncoding."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f'messageEncoding "{encoding}" is not a known character set') from None
    if name == "utf-8":
        return message
    try:
        return message.encode(name)
    except UnicodeEncodeError:
        raise ValueError(f'message cannot be written in "{encoding}"') from None


def draw(format_name: str, message: str, encoding: str, label: str) -> DrawnBarcode:
    """The symbol as an inline <svg> (its modules scale with the box it is put in)."""
    barcode_format = _FORMATS.get(format_name)
    if barcode_format is None:
        return DrawnBarcode(None, problem=f'format "{format_name}" is not a barcode Wallet draws')
    try:
        payload = _payload(message, encoding)
    except ValueError as error:
        return DrawnBarcode(None, problem=str(error))
    return _draw(barcode_format, payload, label)


# Google Wallet's barcode types, by the writer's name for them. Google encodes the value as
# UTF-8 text (it has no messageEncoding); TEXT_ONLY has no symbol at all.
GOOGLE_FORMATS = {
    "QR_CODE": zxingcpp.BarcodeFormat.QRCode,
    "PDF_417": zxingcpp.BarcodeFormat.PDF417,
    "AZTEC": zxingcpp.BarcodeFormat.Aztec,
    "CODE_128": zxingcpp.BarcodeFormat.Code128,
    "CODE_39": zxingcpp.BarcodeFormat.Code39,
    "CODABAR": zxingcpp.BarcodeFormat.Codabar,
    "DATA_MATRIX": zxingcpp.BarcodeFormat.DataMatrix,
    "EAN_13": zxingcpp.BarcodeFormat.EAN13,
    "EAN_8": zxingcpp.BarcodeFormat.EAN8,
    "ITF_14": zxingcpp.BarcodeFormat.ITF,
    "UPC_A": zxingcpp.BarcodeFormat.UPCA,
}
GOOGLE_SQUARE = {"QR_CODE", "AZTEC", "DATA_MATRIX"}
GOOGLE_WIDE = {"PDF_417"}


def draw_google(kind: str, value: str, label: str) -> DrawnBarcode:
    """A Google Wallet barcode (`barcode.type`, `barcode.value`) as an inline <svg>."""
    barcode_format = GOOGLE_FORMATS.get(kind)
    if barcode_format is None:
        return DrawnBarcode(None, problem=f'type "{kind}" is not a barcode this preview draws')
    return _draw(barcode_format, value, label)


def _draw(barcode_format: zxingcpp.BarcodeFormat, payload: str | bytes, label: str) -> DrawnBarcode:
    try:
        size = len(payload.encode() if isinstance(payload, str) else payload)
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"message is longer than {MAX_MESSAGE_BYTES} bytes")
        if not size:
            raise ValueError("message is empty")
        symbol = zxingcpp.create_barcode(payload, barcode_format)
        raw = symbol.to_svg(add_quiet_zones=True)
    except (ValueError, RuntimeError) as error:
        return DrawnBarcode(None, problem=str(error) or "the writer refused the message")
    size_match, body = _SIZE.search(raw), _BODY.search(raw)
    if size_match is None or body is None:
        return DrawnBarcode(None, problem="the writer returned no symbol")
    width, height = int(size_match[1]), int(size_match[2])
    group = body[0].replace('<g id="barcode"', "<g", 1)
    svg = (
        f'<svg class="pkp-code-svg" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" shape-rendering="crispEdges" role="img" '
        f'aria-label="{html.escape(label)}" preserveAspectRatio="none">{group}</svg>'
    )
    return DrawnBarcode(svg, width, height)
