"""Headless Chromium (Debian's `chromium` package) for the page tests: the DOM it built, and a screenshot.

`CHROMIUM` is None when it is not installed; tests then skip, saying so. The PNG reader is enough for what
Chromium writes (8-bit RGB or RGBA, not interlaced): it undoes the row filters, so a test can look at pixels
without Pillow.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 900
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
]
SKIP_REASON = "chromium is not installed (apt-get install chromium): the browser tests need it"


def _run(args: list[str], profile: Path) -> str:
    assert CHROMIUM is not None, SKIP_REASON
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def dump_dom(url: str, profile: Path) -> str:
    """The DOM Chromium built from the page, serialised (after parsing; no script could have run)."""
    return _run(["--dump-dom", url], profile)


def screenshot(url: str, path: Path, profile: Path) -> Path:
    _run([f"--screenshot={path}", url], profile)
    return path


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered, channels bytes per pixel

    def colours(self, limit: int = 64) -> set[bytes]:
        """Distinct pixel values (up to `limit`), sampled over every row."""
        seen: set[bytes] = set()
        c = self.channels
        for row in self.rows:
            for x in range(0, len(row), c * 7):
                seen.add(row[x : x + c])
                if len(seen) >= limit:
                    return seen
        return seen


def read_png(path: Path) -> Png:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour, _comp, _filter, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    channels = 3 if colour == 2 else 4
    return Png(width, height, channels, _unfilter(zlib.decompress(idat), width * channels, height, channels))


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return rows


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
