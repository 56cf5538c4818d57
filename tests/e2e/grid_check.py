#!/usr/bin/env python3
"""grid_check.py PNG ROWS COLS CELL [--betas B1,B2,...] [--inputs] [--gray]

Decodes a `yoto sample` / `yoto reconstruct` grid (docs/FORMATS.md) with its
own PNG reader (zlib and the five PNG filters; no imaging library) and checks
what a user would look at: the size (a label margin of 58 px, then COLS cells
of CELL px, 2 px gaps, ROWS rows), every cell not blank, every pair of rows
different (another beta must change the images), the margin labelled, the
`Rows` text chunk naming each beta. --inputs: row 0 holds the inputs of a
reconstruction grid. --gray: one channel. Exit 1 with the reason otherwise."""
import argparse
import struct
import sys
import zlib

import numpy as np

GAP, MARGIN = 2, 58


def read_png(path):
    d = open(path, "rb").read()
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, text, hdr = 8, b"", {}, None
    while pos < len(d):
        n, kind = struct.unpack(">I4s", d[pos:pos + 8])
        body = d[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", d[pos + 8 + n:pos + 12 + n])[0]:
            sys.exit(f"{path}: bad CRC in chunk {kind}")
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("latin-1")
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (0, 2) or interlace:
        sys.exit(f"{path}: expected 8-bit gray or RGB, not interlaced: {hdr}")
    ch = 1 if ctype == 0 else 3
    stride = w * ch
    raw = zlib.decompress(idat)
    if len(raw) != h * (stride + 1):
        sys.exit(f"{path}: {len(raw)} bytes of pixel data, want {h * (stride + 1)}")
    img = np.zeros((h, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        out = np.zeros(stride, np.int64)
        for i in range(stride):
            a = out[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            elif f == 4:
                q = a + b - c
                pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                p = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                sys.exit(f"{path}: row {y}: filter {f}")
            out[i] = (line[i] + p) & 255
        img[y] = out
        prev = out
    return img.reshape(h, w, ch), text


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png")
    p.add_argument("rows", type=int)
    p.add_argument("cols", type=int)
    p.add_argument("cell", type=int)
    p.add_argument("--betas", default="")
    p.add_argument("--inputs", action="store_true")
    p.add_argument("--gray", action="store_true")
    a = p.parse_args()
    img, text = read_png(a.png)
    h, w, ch = img.shape
    want = (GAP + a.rows * (a.cell + GAP), MARGIN + a.cols * (a.cell + GAP))
    if (h, w) != want:
        sys.exit(f"{a.png}: {w} x {h} px, want {want[1]} x {want[0]}")
    if ch != (1 if a.gray else 3):
        sys.exit(f"{a.png}: {ch} channels, want {1 if a.gray else 3}")
    cells = np.zeros((a.rows, a.cols, a.cell, a.cell, ch))
    for r in range(a.rows):
        for c in range(a.cols):
            y0, x0 = GAP + r * (a.cell + GAP), MARGIN + c * (a.cell + GAP)
            cells[r, c] = img[y0:y0 + a.cell, x0:x0 + a.cell]
            if cells[r, c].max() - cells[r, c].min() < 8:
                sys.exit(f"{a.png}: row {r} column {c} is blank (values {cells[r, c].min():g}..{cells[r, c].max():g})")
    for r in range(a.rows):
        for s in range(r + 1, a.rows):
            d = np.abs(cells[r] - cells[s]).mean()
            if not d >= 0.5:
                sys.exit(f"{a.png}: rows {r} and {s} are the same images (mean |difference| {d:.3f})")
            print(f"rows {r} and {s}: mean |difference| {d:.2f} grey levels")
    margin = img[:, :MARGIN - GAP]
    if margin.max() - margin.min() < 64:
        sys.exit(f"{a.png}: the label margin holds no text")
    rows_text = text.get("Rows", "")
    for b in filter(None, a.betas.split(",")):
        if f"beta={b}" not in rows_text:
            sys.exit(f"{a.png}: the Rows text chunk lacks beta={b}: {rows_text!r}")
    print(f"{a.png}: {w} x {h}, {a.rows} rows x {a.cols} cells, none blank, rows differ")


if __name__ == "__main__":
    main()
