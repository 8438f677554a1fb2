#!/usr/bin/env python3
"""Writes Tests/LeffaDataTests/Fixtures/: small PNG and JPEG files in the encodings real copies of
VITON-HD, DressCode and DeepFashion contain, and what Pillow decodes them to. ReaderEncodingsTests
reads the committed files; it never runs Python.

Made with Pillow 13.0.0 (libjpeg-turbo 3.2.0), by this command from the package root:

    /tmp/ref/bin/python Scripts/make_image_fixtures.py

What it makes:
  - PNGs of 11x9 pixels, written byte by byte here (not by Pillow, so every colour type, bit depth
    and ancillary chunk is the one named): gray 1/4/8/16-bit, gray + tRNS, gray + alpha 8/16-bit,
    RGB 8/16-bit, RGB + tRNS, RGB with gAMA 1.0 (which Pillow ignores), RGB Adam7-interlaced,
    RGBA 8/16-bit, palette 4/8-bit, palette + tRNS; and png-named.jpg, a PNG under a JPEG name.
  - JPEGs of 24x16 pixels written by Pillow: gray, RGB 4:2:0, RGB 4:4:4 progressive, CMYK (Pillow
    writes Adobe-inverted CMYK with an APP14 marker), the same CMYK with its APP14 segment cut out,
    and jpeg-named.png, a JPEG under a PNG name.
  - cmyk-table.png: 256x256 RGB, Pillow's convert("RGB") of the CMYK pixel
    (c, m, y, k) = (x, 255 - x, x, row): every (ink, black) pair of its CMYK -> RGB formula.
  - expected.json: per file its size and the RGB bytes Image.open(f).convert("RGB") gives
    (row-major), and the 8-bit gray Pillow's convert("L") gives. For 16-bit gray, where Pillow
    clips the 16-bit value to 255 instead of scaling it, "rgb" is the high byte (what the readers
    return) and "pillow_rgb" what Pillow gives.
Not a test itself; needs Pillow only.
"""
import io
import json
import os
import struct
import zlib

import PIL
from PIL import Image, features

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeffaDataTests", "Fixtures")
W, H = 11, 9


def value(x, y, k, bits=8):
    """A deterministic sample (integer hash of position and channel), 0 ... 2^bits - 1."""
    z = (x * 73856093 ^ y * 19349663 ^ k * 83492791 ^ 0x5EED) & 0xFFFFFFFF
    z = (z * 2654435761) & 0xFFFFFFFF
    z ^= z >> 15
    return z % (1 << bits)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, bits):
    """One scanline's samples at `bits` per sample, big-endian, packed MSB first below 8 bits."""
    if bits == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if bits == 8:
        return bytes(samples)
    out, acc, n = bytearray(), 0, 0
    for s in samples:
        acc = (acc << bits) | s
        n += bits
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(pixels, color_type, bits, extra=(), interlace=False):
    """A PNG of pixels[y][x] = tuple of samples; filter type 0 on every row; `extra` chunks go
    before IDAT (PLTE first when given)."""
    raw = bytearray()
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            for y in range(y0, H, dy):
                row = [s for x in range(x0, W, dx) for s in pixels[y][x]]
                if row:
                    raw += b"\x00" + pack_row(row, bits)
    else:
        for y in range(H):
            raw += b"\x00" + pack_row([s for x in range(W) for s in pixels[y][x]], bits)
    ihdr = struct.pack(">IIBBBBB", W, H, bits, color_type, 0, 0, 1 if interlace else 0)
    body = chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in extra)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")


def grid(channels, bits, alpha_edges=False):
    px = [[tuple(value(x, y, k, bits) for k in range(channels)) for x in range(W)] for y in range(H)]
    if alpha_edges:  # alpha 0 and full opacity occur, not only random values
        top = (1 << bits) - 1
        for y in range(H):
            px[y][0] = px[y][0][:-1] + (0,)
            px[y][1] = px[y][1][:-1] + (top,)
    return px


def pngs():
    pal = bytes(value(i, 99, k) for i in range(16) for k in range(3))
    pal256 = bytes(value(i, 77, k) for i in range(256) for k in range(3))
    gray8 = grid(1, 8)
    rgb8 = grid(3, 8)
    # Transparent colours that occur in the image, so that dropping them is visible.
    gray_trns = struct.pack(">H", gray8[2][3][0])
    rgb_trns = struct.pack(">HHH", *rgb8[4][5])
    files = {
        "gray1.png": png(grid(1, 1), 0, 1),
        "gray4.png": png(grid(1, 4), 0, 4),
        "gray8.png": png(gray8, 0, 8),
        "gray8-trns.png": png(gray8, 0, 8, [(b"tRNS", gray_trns)]),
        "gray16.png": png(grid(1, 16), 0, 16),
        "graya8.png": png(grid(2, 8, alpha_edges=True), 4, 8),
        "graya16.png": png(grid(2, 16, alpha_edges=True), 4, 16),
        "rgb8.png": png(rgb8, 2, 8),
        "rgb8-trns.png": png(rgb8, 2, 8, [(b"tRNS", rgb_trns)]),
        "rgb8-gamma1.png": png(rgb8, 2, 8, [(b"gAMA", struct.pack(">I", 100000))]),
        "rgb8-interlaced.png": png(rgb8, 2, 8, interlace=True),
        "rgb16.png": png(grid(3, 16), 2, 16),
        "rgba8.png": png(grid(4, 8, alpha_edges=True), 6, 8),
        "rgba16.png": png(grid(4, 16, alpha_edges=True), 6, 16),
        "palette4.png": png(grid(1, 4), 3, 4, [(b"PLTE", pal)]),
        "palette8.png": png(grid(1, 8), 3, 8, [(b"PLTE", pal256)]),
        "palette8-trns.png": png(grid(1, 8), 3, 8, [(b"PLTE", pal256), (b"tRNS", bytes(value(i, 55, 0) for i in range(200)))]),
    }
    files["png-named.jpg"] = files["rgba8.png"]
    return files


def jpegs():
    w, h = 24, 16
    rgb = Image.new("RGB", (w, h))
    rgb.putdata([(value(x // 4, y // 4, 0) // 2 + 64, 255 - x * 8, y * 12 + value(x, y, 5) // 16) for y in range(h) for x in range(w)])
    cmyk = Image.new("CMYK", (w, h))
    cmyk.putdata([(x * 10, 255 - y * 15, value(x // 4, y // 4, 1), (x + y) * 6) for y in range(h) for x in range(w)])
    files = {}

    def save(img, **kw):
        b = io.BytesIO()
        img.save(b, "JPEG", **kw)
        return b.getvalue()

    files["gray.jpg"] = save(rgb.convert("L"), quality=90)
    files["rgb420.jpg"] = save(rgb, quality=90, subsampling=2)
    files["rgb444-progressive.jpg"] = save(rgb, quality=90, subsampling=0, progressive=True)
    files["cmyk-adobe.jpg"] = save(cmyk, quality=90)
    files["cmyk-no-app14.jpg"] = strip_app14(files["cmyk-adobe.jpg"])
    files["jpeg-named.png"] = files["rgb420.jpg"]
    return files


def strip_app14(data):
    """The JPEG without its Adobe APP14 (0xFFEE) segment; everything else byte for byte."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        assert data[i] == 0xFF, "expected a marker"
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            out += data[i:]
            break
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker != 0xEE:
            out += data[i:i + 2 + n]
        i += 2 + n
    assert bytes(out) != data, "no APP14 segment found"
    return bytes(out)


def cmyk_table():
    img = Image.new("CMYK", (256, 256))
    img.putdata([(x, 255 - x, x, y) for y in range(256) for x in range(256)])
    b = io.BytesIO()
    img.convert("RGB").save(b, "PNG")
    return b.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {**pngs(), **jpegs()}
    expected = []
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        im = Image.open(io.BytesIO(data))
        entry = {"file": name, "mode": im.mode, "width": im.width, "height": im.height,
                 "rgb": list(im.convert("RGB").tobytes()), "gray": list(im.convert("L").tobytes())}
        if im.mode == "I;16":
            entry["pillow_rgb"] = entry["rgb"]
            raw = im.tobytes()  # "I;16": little-endian 16-bit samples
            hi = list(raw[1::2])
            entry["rgb"] = [v for v in hi for _ in range(3)]
            entry["gray"] = hi
        expected.append(entry)
        print(f"{name:24} {len(data):5} bytes, Pillow mode {im.mode}")
    with open(os.path.join(OUT, "cmyk-table.png"), "wb") as f:
        f.write(cmyk_table())
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"source": f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}",
                   "files": expected}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
