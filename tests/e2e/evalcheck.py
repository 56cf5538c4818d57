"""evalcheck.py — readers and checks for tests/e2e/test_eval.sh: eval CSVs
(their "# " lines are the file's metadata) and PNG grids, decoded with
matplotlib (Debian's python3-matplotlib) independently of yoto.

    evalcheck.py scaled SMALL.png BIG.png TILE ROWS COLS
        BIG is SMALL (a --scale 1 grid of ROWS x COLS images of TILE px) with
        every image pixel drawn as a constant s x s block; every row has a
        label (dark pixels in the margin); the first and last rows differ
    evalcheck.py scale FILE TILE S      the grid's images are TILE * S px
    evalcheck.py same|differ A B        the two PNGs have the same pixels, or not
    evalcheck.py text FILE KEY VALUE    the tEXt chunk KEY contains VALUE
    evalcheck.py gray FILE TILE ROWS COLS  a grey grid (one channel, or all
        channels equal) of ROWS x COLS images of TILE px, none of them blank
Exits non-zero (AssertionError) on a failed check.
"""
import csv
import re
import struct
import sys

import numpy as np
from matplotlib import image


def rows(path):
    """The rows of an eval CSV as dicts."""
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def meta(path):
    """The "# key: value" lines of an eval CSV."""
    with open(path) as f:
        return dict(line[2:].rstrip("\n").split(": ", 1)
                    for line in f if line.startswith("# ") and ": " in line)


def text(path):
    """The PNG's tEXt chunks, read from the bytes."""
    data, out, i = open(path, "rb").read(), {}, 8
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"tEXt":
            k, v = data[i + 8:i + 8 + n].split(b"\0", 1)
            out[k.decode()] = v.decode("latin-1")
        i += 12 + n
    return out


def pixels(path):
    """[h, w, c] in 0..255"""
    px = np.rint(image.imread(path) * 255).astype(int)
    return px[:, :, None] if px.ndim == 2 else px


LAYOUT = re.compile(r"scale (\d+); images (\d+)x(\d+) px, the first at \((\d+), (\d+)\), "
                    r"(\d+) px apart; label margin (\d+) px")


def grid(path, tile):
    """(pixels, scale, margin, cells[row][col]) of a grid of tile x tile images.
    The layout chunk is checked against the image size and the tile size."""
    px = pixels(path)
    lay = text(path)["Layout"]
    scale, tw, th, x0, y0, gap, margin = map(int, LAYOUT.match(lay).groups())
    assert tw == th == tile * scale, (lay, tile)
    assert x0 == margin and y0 == gap, lay
    cols = (px.shape[1] - margin) // (tw + gap)
    nrows = (px.shape[0] - gap) // (th + gap)
    assert px.shape[1] == margin + cols * (tw + gap), (px.shape, lay)
    assert px.shape[0] == gap + nrows * (th + gap), (px.shape, lay)
    cells = [[px[y0 + r * (th + gap):y0 + r * (th + gap) + th,
                 x0 + c * (tw + gap):x0 + c * (tw + gap) + tw] for c in range(cols)]
             for r in range(nrows)]
    return px, scale, margin, cells


def scaled(small, big, tile, nrows, cols):
    _, s1, _, c1 = grid(small, tile)
    pb, s, margin, cb = grid(big, tile)
    assert s1 == 1 and len(cb) == len(c1) == nrows and len(cb[0]) == cols, (s1, len(cb), len(cb[0]))
    th = tile * s
    gap = (pb.shape[0] - nrows * th) // (nrows + 1)
    for r in range(nrows):
        for c in range(cols):
            assert np.array_equal(np.repeat(np.repeat(c1[r][c], s, 0), s, 1), cb[r][c]), (r, c)
        label = pb[gap + r * (th + gap):gap + r * (th + gap) + th, :margin - gap]
        assert label.min() < 64 and label.max() == 255, (r, label.min())
    diff = np.mean([np.abs(cb[0][c] - cb[-1][c]).mean() for c in range(cols)])
    assert diff > 1, diff


def gray(path, tile, nrows, cols):
    px, _, _, cells = grid(path, tile)
    assert px.shape[2] == 1 or (np.array_equal(px[:, :, 0], px[:, :, 1]) and
                                np.array_equal(px[:, :, 0], px[:, :, 2])), "not grey"
    assert len(cells) == nrows and len(cells[0]) == cols, (len(cells), len(cells[0]))
    assert all(c.std() > 0 for row in cells for c in row), "a blank image"


def main(argv):
    what = argv[1]
    if what == "scaled":
        scaled(argv[2], argv[3], *map(int, argv[4:7]))
    elif what == "scale":
        s = grid(argv[2], int(argv[3]))[1]
        assert s == int(argv[4]), s
    elif what in ("same", "differ"):
        a, b = pixels(argv[2]), pixels(argv[3])
        assert a.shape == b.shape, (a.shape, b.shape)
        assert np.array_equal(a, b) == (what == "same"), what
    elif what == "gray":
        gray(argv[2], *map(int, argv[3:6]))
    elif what == "text":
        t = text(argv[2])
        assert argv[4] in t.get(argv[3], ""), t
    else:
        sys.exit(f"evalcheck.py: unknown check {what}")


if __name__ == "__main__":
    main(sys.argv)
