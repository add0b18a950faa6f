"""Model metadata that travels with a `.tflite` file: labels, colour, normalization, crop, provenance.

It is stored inside the model file as a small zip archive appended after the flatbuffer (the
same packing TFLite Support uses for associated files: interpreters ignore the trailing bytes),
holding `edge_fer.json`. A `MODEL.json` sidecar beside the model, when present, is read instead
for models that cannot be rewritten. Options given on the command line override either.

The archive also holds `flatbuffer.sha256`, the checksum of the bytes before it: a model whose
weights were damaged on the way (a bad SD card, a half-finished copy) still loads and answers,
wrongly, so the runtime checks it at load. It is a member of its own rather than a key of
`edge_fer.json` so that the metadata schema, which sidecars share, stays the same and older
runtimes ignore it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from edge_fer.errors import ModelError, UsageError

METADATA_NAME = "edge_fer.json"
#: Archive member holding the sha256 (hex) of the flatbuffer the archive is appended to.
CHECKSUM_NAME = "flatbuffer.sha256"

#: How pixel values p in 0..255 become model input x.
NORMALIZATIONS = {
    "unit": "x = p / 255  (0..1)",
    "symmetric": "x = (p / 255 - 0.5) * 2  (-1..1)",
    "raw": "x = p  (0..255)",
}
COLORS = ("gray", "rgb")


def normalize(pixels: np.ndarray, normalization: str) -> np.ndarray:
    """uint8 pixels -> float32 model input."""
    x = pixels.astype(np.float32)
    if normalization == "unit":
        return x / 255.0
    if normalization == "symmetric":
        return (x / 255.0 - 0.5) * 2.0
    if normalization == "raw":
        return x
    raise UsageError(f"unknown normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")


@dataclass
class ModelMetadata:
    """What the runtime needs to know about a model beyond its tensors."""

    labels: list[str]
    """Class names in output order."""
    color: str = "gray"
    """Input colour: `gray` or `rgb`."""
    normalization: str = "unit"
    """How pixels map to input values; a key of `NORMALIZATIONS`."""
    crop_margin: float = 0.0
    """Fraction of the face box width added on each side before resizing, matching training."""
    input_size: list[int] | None = None
    """[width, height] the model was trained at (the model's own input shape is authoritative)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where the model came from: source file, training command, data, scores, date."""

    def validate(self, where: str = "metadata") -> "ModelMetadata":
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise ModelError(f"{where}: 'labels' must be a non-empty list of names")
        if len(set(self.labels)) != len(self.labels):
            raise ModelError(f"{where}: 'labels' has duplicates: {self.labels}")
        if self.color not in COLORS:
            raise ModelError(f"{where}: 'color' is {self.color!r}, expected one of {', '.join(COLORS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ModelError(
                f"{where}: 'normalization' is {self.normalization!r}, expected one of "
                f"{', '.join(NORMALIZATIONS)}"
            )
        if not 0.0 <= float(self.crop_margin) <= 1.0:
            raise ModelError(f"{where}: 'crop_margin' must be between 0 and 1")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "metadata") -> "ModelMetadata":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "labels" not in data:
            raise ModelError(f"{where}: 'labels' is missing")
        return cls(**dict(data)).validate(where)

    def with_overrides(self, **overrides: Any) -> "ModelMetadata":
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given).validate("options") if given else self


def _split_zip(blob: bytes) -> tuple[bytes, bytes | None]:
    """(model bytes, appended zip bytes or None)."""
    # The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
    tail_start = max(0, len(blob) - 65557)
    eocd = blob.rfind(b"PK\x05\x06", tail_start)
    if eocd < 0:
        return blob, None
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        return blob, None
    if not infos:
        return blob, None
    # zipfile accounts for data prepended to an archive, so header offsets are absolute in `blob`.
    cut = min(i.header_offset for i in infos)
    return blob[:cut], blob[cut:]


@dataclass(frozen=True)
class PackedModel:
    """A model file taken apart: the flatbuffer and what the edge-fer archive after it holds."""

    flatbuffer: bytes
    """The TFLite model proper, the bytes an interpreter reads."""
    metadata: dict[str, Any] | None
    """The embedded `edge_fer.json` mapping, or None."""
    sha256: str | None
    """The flatbuffer checksum recorded when the model was written, or None (an older model)."""


def unpack(model_bytes: bytes) -> PackedModel:
    """Split a model file into its flatbuffer and the embedded metadata and checksum."""
    base, archive = _split_zip(model_bytes)
    if archive is None:
        return PackedModel(base, None, None)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            names = zf.namelist()
            meta = json.loads(zf.read(METADATA_NAME)) if METADATA_NAME in names else None
            digest = zf.read(CHECKSUM_NAME).decode("ascii").strip() if CHECKSUM_NAME in names else None
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"the model's embedded metadata is damaged ({exc}): re-convert the model") from None
    return PackedModel(base, meta, digest)


def read_embedded(model_bytes: bytes) -> dict[str, Any] | None:
    """The metadata mapping embedded in a model file, or None."""
    return unpack(model_bytes).metadata


def flatbuffer_sha256(flatbuffer: bytes) -> str:
    return hashlib.sha256(flatbuffer).hexdigest()


def verify_checksum(model_path: str | os.PathLike, model_bytes: bytes) -> str | None:
    """The flatbuffer's sha256 when the model carries a checksum and it matches; None when the
    model carries none (it cannot be verified); ModelError when it differs."""
    packed = unpack(model_bytes)
    if packed.sha256 is None:
        return None
    actual = flatbuffer_sha256(packed.flatbuffer)
    if actual != packed.sha256.lower():
        raise ModelError(f"{model_path} is corrupted: its weights do not match the sha256 recorded "
                         f"when it was written (recorded {packed.sha256[:12]}..., found "
                         f"{actual[:12]}...): copy the model again or re-convert it")
    return actual


def embed(model_bytes: bytes, metadata: ModelMetadata) -> bytes:
    """Model bytes with `metadata` and the flatbuffer's checksum appended (replacing any earlier
    edge-fer archive; the flatbuffer itself is kept byte for byte)."""
    base, _ = _split_zip(model_bytes)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        # A fixed timestamp: the same model and metadata give the same file, byte for byte.
        for name, text in ((METADATA_NAME, metadata.to_json()),
                           (CHECKSUM_NAME, flatbuffer_sha256(base) + "\n")):
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return base + buf.getvalue()


def sidecar_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def load_metadata(model_path: str | os.PathLike, model_bytes: bytes) -> ModelMetadata | None:
    """Sidecar `MODEL.json` if present, else the embedded archive, else None."""
    side = sidecar_path(model_path)
    if side.is_file():
        try:
            data = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{side}: not valid JSON ({exc})") from None
        return ModelMetadata.from_mapping(data, str(side))
    data = read_embedded(model_bytes)
    if data is None:
        return None
    return ModelMetadata.from_mapping(data, f"{model_path} (embedded metadata)")


#: An absolute path in a provenance string: where the model was built, which says nothing on
#: the machine that runs it.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/\"',]+/)+([^\s/\"',]+)")


def provenance_lines(provenance: Mapping[str, Any], width: int = 100) -> list[str]:
    """`provenance` as `key: value` lines for people: nested tables as dotted keys (a table of
    plain values on one line when it fits), lists of plain values joined by `; `, absolute
    build-machine paths cut to their file name (`…/default-kd80.keras`), and values longer
    than `width` wrapped onto indented lines rather than cut."""
    import textwrap

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        if isinstance(value, str):
            return _ABSOLUTE_PATH.sub(lambda m: "…/" + m.group(1), value)
        return json.dumps(value) if value is None or isinstance(value, bool) else str(value)

    def plain(value: Any) -> bool:
        return not isinstance(value, (Mapping, list, tuple))

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, Mapping):
            one_line = ", ".join(f"{k} {text(v)}" for k, v in sorted(value.items()))
            if all(plain(v) for v in value.values()) and len(prefix) + len(one_line) + 2 <= width:
                yield prefix, one_line or "-"
                return
            for k in sorted(value):
                yield from walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        elif isinstance(value, (list, tuple)) and all(plain(v) for v in value):
            yield prefix, "; ".join(text(v) for v in value) or "-"
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value, 1):
                yield from walk(f"{prefix}[{i}]", item)
        else:
            yield prefix, text(value)

    lines = []
    for key, value in walk("", dict(provenance)):
        lines += textwrap.wrap(f"{key}: {value}", width, subsequent_indent="    ",
                               break_long_words=False, break_on_hyphens=False) or [f"{key}:"]
    return lines
