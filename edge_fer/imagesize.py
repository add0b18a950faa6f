"""The pixel size of an encoded image, read from its header without decoding it.

OpenCV has no header-only call: `imdecode` allocates the whole image before anything can refuse
it, and its own cap (`OPENCV_IO_MAX_IMAGE_PIXELS`, 2^30 pixels) is read once per process from the
environment, far above what a Pi can hold, and reports through stderr rather than an exception.
Pillow would do, but it is not a runtime dependency and would be one only for this. So the size
comes from these few lines per format, for every format OpenCV's wheel decodes whose header
states it: JPEG, PNG, BMP, WebP, TIFF, GIF, the PNM family (PBM/PGM/PPM/PAM/PFM), Sun raster,
Radiance HDR, JPEG 2000 and AVIF. Anything else is unknown (None) and the caller refuses it: a
size that cannot be checked is not decoded.

`data` is anything that slices to bytes and has `find` (bytes, bytearray, mmap): a file mapped
into memory is read only where the header lies.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Callable

#: Formats `image_size` reads, for messages.
FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF", "GIF", "PNM/PAM/PFM", "Sun raster", "HDR",
           "JPEG 2000", "AVIF")


@dataclass(frozen=True)
class ImageSize:
    """What an image header says."""

    format: str
    """One of FORMATS."""
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _u(fmt: str, data, offset: int) -> tuple:
    """struct.unpack at `offset`, or ValueError when `data` ends first."""
    size = struct.calcsize(fmt)
    chunk = data[offset:offset + size]
    if len(chunk) != size:
        raise ValueError("truncated header")
    return struct.unpack(fmt, chunk)


def _jpeg(data) -> tuple[int, int]:
    # Walk the marker segments to the first frame header (SOF0-SOF15 but DHT, JPG and DAC);
    # APPn segments (an EXIF thumbnail has its own SOF) are skipped whole by their length.
    pos = 2
    while True:
        while data[pos:pos + 1] != b"\xff":
            if pos >= len(data):
                raise ValueError("no frame header")
            pos += 1
        while data[pos:pos + 1] == b"\xff":  # fill bytes
            pos += 1
        marker = data[pos:pos + 1]
        if not marker:
            raise ValueError("no frame header")
        m = marker[0]
        pos += 1
        if m == 0xD8 or 0xD0 <= m <= 0xD7 or m == 0x01:  # markers without a length
            continue
        if m in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise ValueError("no frame header")
        (length,) = _u(">H", data, pos)
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            height, width = _u(">HH", data, pos + 3)
            return width, height
        pos += length


def _png(data) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk")
    return _u(">II", data, 16)


def _bmp(data) -> tuple[int, int]:
    (dib,) = _u("<I", data, 14)
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        return _u("<HH", data, 18)
    width, height = _u("<ii", data, 18)
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp(data) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        w, h = _u("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20:21] != b"\x2f":
            raise ValueError("bad VP8L signature")
        (bits,) = _u("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        b = data[24:30]
        if len(b) != 6:
            raise ValueError("truncated header")
        return int.from_bytes(b[0:3], "little") + 1, int.from_bytes(b[3:6], "little") + 1
    raise ValueError(f"unknown WebP chunk {bytes(chunk)!r}")


_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8


def _tiff(data) -> tuple[int, int]:
    e = "<" if data[:2] == b"II" else ">"
    (magic,) = _u(e + "H", data, 2)
    if magic == 42:
        (ifd,) = _u(e + "I", data, 4)
        (count,) = _u(e + "H", data, ifd)
        first, entry, count_fmt = ifd + 2, 12, "I"
    elif magic == 43:  # BigTIFF
        (ifd,) = _u(e + "Q", data, 8)
        (count,) = _u(e + "Q", data, ifd)
        first, entry, count_fmt = ifd + 8, 20, "Q"
    else:
        raise ValueError("not TIFF")
    found = {}
    for i in range(min(count, 4096)):
        at = first + i * entry
        tag, kind = _u(e + "HH", data, at)
        if tag in (256, 257) and kind in _TIFF_TYPES:
            value_at = at + 4 + struct.calcsize(count_fmt)
            (found[tag],) = _u(e + _TIFF_TYPES[kind], data, value_at)
    if 256 not in found or 257 not in found:
        raise ValueError("no ImageWidth/ImageLength in the first IFD")
    return found[256], found[257]


def _gif(data) -> tuple[int, int]:
    return _u("<HH", data, 6)


def _tokens(data, start: int, n: int) -> list[bytes]:
    """The first `n` whitespace-separated tokens after `start`, skipping `#` comments (PNM)."""
    head = bytes(data[start:start + 4096])
    head = re.sub(rb"#[^\n\r]*", b" ", head)
    found = head.split()
    if len(found) < n:
        raise ValueError("truncated header")
    return found[:n]


def _pnm(data) -> tuple[int, int]:
    w, h = _tokens(data, 2, 2)
    return int(w), int(h)


def _pam(data) -> tuple[int, int]:
    head = bytes(data[:4096])
    end = head.find(b"ENDHDR")
    fields = dict(re.findall(rb"^(WIDTH|HEIGHT)\s+(\d+)", head[:end if end >= 0 else None], re.M))
    if b"WIDTH" not in fields or b"HEIGHT" not in fields:
        raise ValueError("no WIDTH/HEIGHT")
    return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])


def _sun(data) -> tuple[int, int]:
    return _u(">II", data, 4)


def _hdr(data) -> tuple[int, int]:
    head = bytes(data[:65536])
    m = re.search(rb"\n\n([-+][XY]) (\d+) ([-+][XY]) (\d+)", head.replace(b"\r\n", b"\n"))
    if not m:
        raise ValueError("no resolution line")
    size = {m.group(1)[1:]: int(m.group(2)), m.group(3)[1:]: int(m.group(4))}
    return size[b"X"], size[b"Y"]


def _jp2(data) -> tuple[int, int]:
    at = data.find(b"ihdr", 0, 4096)
    if at < 0:
        raise ValueError("no ihdr box")
    height, width = _u(">II", data, at + 4)
    return width, height


def _j2k(data) -> tuple[int, int]:
    if data[2:4] != b"\xff\x51":
        raise ValueError("no SIZ marker")
    xsiz, ysiz, xo, yo = _u(">IIII", data, 8)
    return xsiz - xo, ysiz - yo


def _avif(data) -> tuple[int, int]:
    # Every image item (the primary image, its tiles, an alpha plane, a thumbnail) has an 'ispe'
    # property; the largest is at least the decoded size.
    best, at = None, data.find(b"ispe")
    while at >= 0:
        size = _u(">II", data, at + 8)
        if best is None or size[0] * size[1] > best[0] * best[1]:
            best = size
        at = data.find(b"ispe", at + 4)
    if best is None:
        raise ValueError("no ispe property")
    return best


def _is_avif(data) -> bool:
    if data[4:8] != b"ftyp":
        return False
    (box,) = _u(">I", data, 0)
    brands = bytes(data[8:min(box, 256)])
    return any(brands[i:i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4))


#: (test on the first bytes, format name, parser)
_SIGNATURES: list[tuple[Callable[[bytes], bool], str, Callable]] = [
    (lambda h: h[:3] == b"\xff\xd8\xff", "JPEG", _jpeg),
    (lambda h: h[:8] == b"\x89PNG\r\n\x1a\n", "PNG", _png),
    (lambda h: h[:2] == b"BM", "BMP", _bmp),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "WebP", _webp),
    (lambda h: h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF", _tiff),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "GIF", _gif),
    (lambda h: h[:1] == b"P" and h[1:2] in b"123456" and h[2:3].isspace(), "PNM/PAM/PFM", _pnm),
    (lambda h: h[:3] == b"P7\n", "PNM/PAM/PFM", _pam),
    (lambda h: h[:2] in (b"PF", b"Pf") and h[2:3].isspace(), "PNM/PAM/PFM", _pnm),
    (lambda h: h[:4] == b"\x59\xa6\x6a\x95", "Sun raster", _sun),
    (lambda h: h[:10] == b"#?RADIANCE" or h[:6] == b"#?RGBE", "HDR", _hdr),
    (lambda h: h[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000", _jp2),
    (lambda h: h[:4] == b"\xff\x4f\xff\x51", "JPEG 2000", _j2k),
]


def image_size(data) -> ImageSize | None:
    """The size the header of encoded image `data` states; None for a format it does not know
    or a header it cannot read (the caller should not decode such data)."""
    head = bytes(data[:16])
    for test, name, parse in _SIGNATURES:
        if test(head):
            break
    else:
        try:
            if not _is_avif(data):
                return None
        except ValueError:
            return None
        name, parse = "AVIF", _avif
    try:
        width, height = parse(data)
    except (ValueError, struct.error, IndexError):
        return None
    return ImageSize(name, int(width), int(height))
