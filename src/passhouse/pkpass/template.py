"""Templates: pass.json with {{placeholders}}, images, localizations, personalization.json."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from passhouse.pkpass.errors import TemplateError, TemplateTooLarge
from passhouse.pkpass.images import check_images
from passhouse.pkpass.json_input import DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP, JsonRejected, parse_json
from passhouse.pkpass.pass_json import STYLE_KEYS, validate_pass_json, validate_personalization
from passhouse.pkpass.report import Report
from passhouse.pkpass.strings import (
    StringsError,
    encode_strings,
    is_utf16,
    parse_strings,
    read_strings,
)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")
# Files that belong to a signed pass, never to a template; and OS litter that Apple rejects.
_GENERATED = {"manifest.json", "signature"}
# zipfile inflates deflate in pieces of at most the size asked for; bzip2 and LZMA it
# inflates a whole read at once, so a few KB could become gigabytes. Apple zips deflate.
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_INFLATE_CHUNK = 64 * 1024
# Top-level keys the server owns; a template cannot set them to something else.
OVERRIDE_KEYS = frozenset(
    {
        "serialNumber",
        "authenticationToken",
        "webServiceURL",
        "passTypeIdentifier",
        "teamIdentifier",
        "voided",
    }
)


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """How much a template zip or folder may unpack to, and how deep its JSON may nest."""

    max_files: int = 1_000
    max_file_bytes: int = 5 * 1024 * 1024
    max_bytes: int = 20 * 1024 * 1024
    max_json_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = TemplateLimits()


class Template:
    """A pass design. `render()` fills it with one pass's data; the result goes to build_pkpass."""

    def __init__(
        self, pass_json: dict[str, Any], assets: dict[str, bytes], name: str = "template"
    ) -> None:
        self.pass_json = pass_json
        self.assets = assets
        self.name = name

    def __repr__(self) -> str:
        return f"Template({self.name!r}, assets={sorted(self.assets)})"

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, bytes],
        name: str = "template",
        *,
        max_json_depth: int = DEFAULT_MAX_DEPTH,
    ) -> Template:
        """From relative POSIX paths to bytes, as found in a folder or zip."""
        kept: dict[str, bytes] = {}
        for path, data in files.items():
            parts = PurePosixPath(path).parts
            if path.startswith("/") or ".." in parts or "\\" in path:
                raise TemplateError(f'Template "{name}" contains an unsafe file name: {path}')
            if any(part.startswith(".") or part == "__MACOSX" for part in parts):
                continue  # .DS_Store, .git, macOS zip resource forks
            if path in _GENERATED:
                continue
            if len(parts) > 2 or (len(parts) == 2 and not parts[0].endswith(".lproj")):
                raise TemplateError(
                    f'Template "{name}": {path} is not allowed; only files at the top level '
                    "and in <language>.lproj/ folders are part of a pass"
                )
            kept[path] = data
        raw = kept.pop("pass.json", None)
        if raw is None:
            raise TemplateError(f'Template "{name}" has no pass.json at its top level.')
        return cls(_load_json(raw, "pass.json", name, max_json_depth), kept, name)

    @classmethod
    def from_directory(
        cls, path: str | Path, *, limits: TemplateLimits = DEFAULT_LIMITS
    ) -> Template:
        root = Path(path)
        if not root.is_dir():
            raise TemplateError(f'Template folder "{root}" does not exist.')
        budget = _Budget(root.name, limits)
        files: dict[str, bytes] = {}
        for file in sorted(root.rglob("*")):
            if file.is_file():
                relative = file.relative_to(root).as_posix()
                budget.count(relative, file.stat().st_size)
                files[relative] = file.read_bytes()
                budget.take(relative, len(files[relative]))
        return cls.from_files(files, name=root.name, max_json_depth=limits.max_json_depth)

    @classmethod
    def from_zip(
        cls, data: bytes, name: str = "template", *, limits: TemplateLimits = DEFAULT_LIMITS
    ) -> Template:
        """Unpack a zip, measured by the bytes it inflates to, whatever its headers claim.

        CPU-bound for up to `limits.max_bytes` of inflating: call it off the event loop.
        """
        budget = _Budget(name, limits)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                entries = [info for info in archive.infolist() if not info.is_dir()]
                files = {}
                for info in entries:
                    budget.count(info.filename, info.file_size)
                    if info.compress_type not in _ZIP_METHODS:
                        raise TemplateError(
                            f'Template "{name}": {info.filename} is compressed with a method '
                            "passhouse does not read; zip it with deflate (the usual one)."
                        )
                    try:
                        files[info.filename] = _inflate(archive, info, budget)
                    except zipfile.BadZipFile:
                        raise TemplateError(
                            f'Template "{name}": {info.filename} is damaged in the zip (its '
                            "data does not match the size or checksum the zip gives for it)."
                        ) from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as error:
            if isinstance(error, TemplateError):
                raise
            raise TemplateError(f'Template "{name}" is not a valid zip file.') from None
        except (NotImplementedError, OSError):
            raise TemplateError(f'Template "{name}" is not a valid zip file.') from None
        # A zipped folder holds "folder/pass.json": unwrap that one level.
        if "pass.json" not in files:
            tops = {path.split("/", 1)[0] for path in files if "/" in path}
            wrapped = [top for top in tops if f"{top}/pass.json" in files]
            if len(wrapped) == 1:
                prefix = wrapped[0] + "/"
                files = {
                    path[len(prefix) :]: data
                    for path, data in files.items()
                    if path.startswith(prefix)
                }
        return cls.from_files(files, name=name, max_json_depth=limits.max_json_depth)

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for text in self._texts():
            names.update(_PLACEHOLDER.findall(text))
        return names

    @property
    def style(self) -> str | None:
        styles = [key for key in STYLE_KEYS if key in self.pass_json]
        return styles[0] if len(styles) == 1 else None

    def check(self, *, max_json_depth: int = DEFAULT_MAX_DEPTH) -> Report:
        """Template-level problems: icon, PNGs, localizations, personalization.json, and the
        pass.json rules that do not depend on pass data or on the keys the server sets
        (OVERRIDE_KEYS); build_pkpass checks the rendered pass in full."""
        report = check_images(self.assets, self.style)
        report.extend(check_localizations(self.assets))
        if "personalization.json" in self.assets:
            try:
                data = parse_json(self.assets["personalization.json"], max_depth=max_json_depth)
            except ValueError as error:
                report.errors.append(f"personalization.json: not valid JSON ({error})")
            else:
                report.errors.extend(validate_personalization(data))
        # pass.json rules, except where a placeholder stands in for the value (its type and
        # content are only known once the pass data fills it).
        pass_report = validate_pass_json(self.pass_json)
        report.errors.extend(
            m for m in pass_report.errors if not _depends_on_pass_data(self.pass_json, m)
        )
        report.warnings.extend(
            m for m in pass_report.warnings if not _depends_on_pass_data(self.pass_json, m)
        )
        return report

    def render(
        self,
        data: Mapping[str, Any],
        *,
        overrides: Mapping[str, Any] | None = None,
        personalized: bool = False,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """pass.json and assets with every {{name}} replaced by data.

        A placeholder that is the whole value keeps the data's JSON type; inside a longer
        string it is formatted with str(). `overrides` replace top-level keys (None removes).
        """
        missing: set[str] = set()
        pass_json = _substitute(self.pass_json, data, missing)
        assets = dict(self.assets)
        for path, raw in self.assets.items():
            if path.endswith(".lproj/pass.strings"):
                assets[path] = _render_strings(raw, data, missing, path, self.name)
            elif path == "personalization.json" and b"{{" in raw:
                # Checked against the configured depth when the template was accepted.
                personalization = _load_json(raw, path, self.name, MAX_DEPTH_CAP)
                rendered = _substitute(personalization, data, missing)
                assets[path] = json.dumps(rendered, ensure_ascii=False).encode()
        if missing:
            raise self._missing(missing)
        for key, value in (overrides or {}).items():
            if value is None:
                pass_json.pop(key, None)
            else:
                pass_json[key] = value
        if personalized:
            assets.pop("personalization.json", None)
        return pass_json, assets

    def depends_on_data(self, key: str) -> bool:
        """Whether a top-level pass.json key holds a placeholder (differs from pass to pass)."""
        return any("{{" in text for text in _strings_in(self.pass_json.get(key)))

    def render_key(self, key: str, data: Mapping[str, Any]) -> Any:
        """One top-level pass.json value filled with data (None when the key is absent),
        without rendering the rest of the pass; TemplateError names a missing value."""
        missing: set[str] = set()
        value = _substitute(self.pass_json.get(key), data, missing)
        if missing:
            raise self._missing(missing)
        return value

    def _missing(self, missing: set[str]) -> TemplateError:
        names = ", ".join("{{" + name + "}}" for name in sorted(missing))
        return TemplateError(
            f'Template "{self.name}" needs a value for {names}: add it to the pass data.'
        )

    def _texts(self) -> Iterator[str]:
        yield from _strings_in(self.pass_json)
        for path, raw in self.assets.items():
            if path.endswith(".strings"):
                try:
                    yield from parse_strings(raw).values()
                except StringsError:
                    continue
            elif path == "personalization.json":
                try:
                    yield from _strings_in(parse_json(raw, max_depth=MAX_DEPTH_CAP))
                except ValueError:
                    continue


def check_localizations(files: Mapping[str, bytes]) -> Report:
    """pass.strings must parse, should be UTF-16, and every .lproj must have the same keys."""
    report = Report()
    keys: dict[str, set[str]] = {}
    folders = {path.split("/", 1)[0] for path in files if ".lproj/" in path}
    for folder in sorted(folders):
        path = f"{folder}/pass.strings"
        raw = files.get(path)
        if raw is None:
            keys[folder] = set()
            continue
        try:
            keys[folder] = set(parse_strings(raw))
        except StringsError as error:
            report.errors.append(f"{path}: {error}")
            continue
        if not is_utf16(raw):
            report.warnings.append(
                f"{path}: Apple asks for UTF-16; passhouse re-encodes it when it builds passes"
            )
    every = set().union(*keys.values()) if keys else set()
    for folder, present in sorted(keys.items()):
        absent = every - present
        if absent:
            listed = ", ".join(f'"{key}"' for key in sorted(absent)[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            report.errors.append(
                f"{folder}/pass.strings: missing {listed}{more}; every .lproj needs the same keys"
            )
    return report


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _depends_on_pass_data(pass_json: Mapping[str, Any], message: str) -> bool:
    """Whether a pass.json problem depends on pass data: a placeholder or a server-set key."""
    path = message.split(": ", 1)[0]
    if path in OVERRIDE_KEYS:
        return True  # the server sets these when it renders each pass
    value: Any = pass_json
    for name, index in _PATH_PART.findall(path):
        if isinstance(value, str):
            break
        if name and isinstance(value, Mapping) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return False
    return isinstance(value, str) and "{{" in value


class _Budget:
    """Counts a template's files and bytes against its limits as they are unpacked."""

    def __init__(self, template: str, limits: TemplateLimits) -> None:
        self.template = template
        self.limits = limits
        self.files = 0
        self.left = limits.max_bytes

    def count(self, path: str, declared_size: int) -> None:
        """One more file; its declared size refuses the obvious cases before any work."""
        self.files += 1
        if self.files > self.limits.max_files:
            raise TemplateTooLarge(
                f'Template "{self.template}" has more than {self.limits.max_files} files.'
            )
        self.check_size(path, declared_size)

    def check_size(self, path: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise TemplateTooLarge(
                f'Template "{self.template}": {path} is larger than '
                f"{self.limits.max_file_bytes} bytes unpacked."
            )
        if size > self.left:
            raise TemplateTooLarge(
                f'Template "{self.template}" is larger than {self.limits.max_bytes} bytes unpacked.'
            )

    def take(self, path: str, size: int) -> None:
        self.check_size(path, size)
        self.left -= size


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    chunks = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(_INFLATE_CHUNK):
            size += len(chunk)
            budget.check_size(info.filename, size)
            chunks.append(chunk)
    budget.take(info.filename, size)
    return b"".join(chunks)


def _load_json(raw: bytes, path: str, template: str, max_depth: int) -> dict[str, Any]:
    try:
        value = parse_json(raw.decode("utf-8-sig"), max_depth=max_depth)
    except UnicodeDecodeError:
        raise TemplateError(f'Template "{template}": {path} is not UTF-8 text.') from None
    except JsonRejected as error:
        raise TemplateError(f'Template "{template}": {path}: {error.message}') from None
    except json.JSONDecodeError as error:
        raise TemplateError(
            f'Template "{template}": {path} is not valid JSON (line {error.lineno}, '
            f"column {error.colno}: {error.msg})."
        ) from None
    if not isinstance(value, dict):
        raise TemplateError(f'Template "{template}": {path} must be a JSON object.')
    return value


def _lookup(data: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    # {{a.b}} reads data["a"]["b"]; a literal "a.b" key is only the fallback, so a stray
    # one (set by older CLIs) cannot hide the nested value for ever.
    current: Any = data
    for part in name.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return (True, data[name]) if name in data else (False, None)
    return True, current


def set_data_path(data: dict[str, Any], name: str, value: Any) -> None:
    """Set the value {{name}} reads: "seat.number" sets data["seat"]["number"]."""
    *parents, last = name.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _fill(text: str, data: Mapping[str, Any], missing: set[str], *, keep_type: bool = True) -> Any:
    """The text with its placeholders filled; a whole-value placeholder keeps the data's type
    unless `keep_type` is False (text files). Unfilled names are added to `missing`."""
    whole = _PLACEHOLDER.fullmatch(text)
    if whole is not None and keep_type:
        found, value = _lookup(data, whole.group(1))
        if not found:
            missing.add(whole.group(1))
        return value

    def replace(match: re.Match[str]) -> str:
        found, value = _lookup(data, match.group(1))
        # Inside text, null has no spelling: Python's "None" must never reach a pass.
        if not found or value is None:
            missing.add(match.group(1))
            return ""
        return str(value)

    return _PLACEHOLDER.sub(replace, text)


def _substitute(value: Any, data: Mapping[str, Any], missing: set[str]) -> Any:
    if isinstance(value, str):
        return _fill(value, data, missing) if "{{" in value else value
    if isinstance(value, dict):
        return {key: _substitute(item, data, missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, data, missing) for item in value]
    return value


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _render_strings(
    raw: bytes, data: Mapping[str, Any], missing: set[str], path: str, template: str
) -> bytes:
    try:
        strings = read_strings(raw)
    except StringsError as error:
        raise TemplateError(f'Template "{template}": {path}: {error}.') from None
    if not strings.templated:
        return strings.utf16
    rendered = {
        key: _fill(text, data, missing, keep_type=False) if "{{" in text else text
        for key, text in strings.entries.items()
    }
    return encode_strings(rendered)
