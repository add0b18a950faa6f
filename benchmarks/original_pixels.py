"""A copy of a shared FER2013 split on its original pixels, for scoring models on faces that are
not histogram-equalized (issue 26, item 5).

The shared folders (`../shared/datasets/fer2013/`) hold `cv2.equalizeHist` of the original
FER2013 pixels; a camera crop is not equalized. FER+'s PNGs of the original pixels are in the
public repository tessav/crowd-emotion (`data/FER2013{Train,Valid,Test}/`, named in
`fer2013new.csv`, whose rows follow the original `fer2013.csv`). This script reads them from a
local git snapshot of that repository (never downloaded here, never committed), finds each
shared file's original through the votes file's `fer2013_row`, and writes

    OUT/SPLIT/CLASS/NAME.png     the original pixels (lossless), under the shared folder's class
    OUT/ferplus.csv              the votes of the files written, their paths renamed to .png
                                 (rows of other splits written to OUT before are kept)

so `edge-fer evaluate --data OUT/SPLIT` scores both label sets on them, and prints how many
faces it wrote and how closely each equalized original matches the shared copy (a check of the
mapping: correlation 0.99 and more).

    python benchmarks/original_pixels.py --snapshot /path/to/crowd-emotion.git --split privatetest --out /tmp/fer-original
    edge-fer evaluate --model lite --data /tmp/fer-original/privatetest
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def git(snapshot: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(snapshot), *args], capture_output=True, text=True,
                          check=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshot", required=True, type=Path,
                    help="a git clone (or bare git dir) of tessav/crowd-emotion")
    ap.add_argument("--split", default="privatetest", choices=["train", "publictest", "privatetest"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "fer2013",
                    help="the shared FER2013 folder (holding ferplus.csv and the split folders)")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    try:
        names = set(git(a.snapshot, "ls-tree", "-r", "--name-only", "HEAD", "data/").split())
        new = list(csv.reader(git(a.snapshot, "show", "HEAD:fer2013new.csv").splitlines()))[1:]
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"original_pixels: {a.snapshot} is not a git snapshot of tessav/crowd-emotion ({exc})",
              file=sys.stderr)
        return 2
    with open(a.data / "ferplus.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, [r for r in reader if r["path"].startswith(a.split + "/")]
    wanted = []
    for r in rows:
        if not r["fer2013_row"]:
            continue
        usage, name = new[int(r["fer2013_row"])][:2]
        source = f"data/{FOLDERS[usage]}/{name}"
        if name and source in names:
            wanted.append((r, source))
    cat = subprocess.Popen(["git", "-C", str(a.snapshot), "cat-file", "--batch"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    written, corr = [], []
    for r, source in wanted:
        cat.stdin.write(f"HEAD:{source}\n".encode())
        cat.stdin.flush()
        size = int(cat.stdout.readline().split()[2])
        face = cv2.imdecode(np.frombuffer(cat.stdout.read(size), np.uint8), cv2.IMREAD_GRAYSCALE)
        cat.stdout.read(1)
        shared = cv2.imread(str(a.data / r["path"]), cv2.IMREAD_GRAYSCALE)
        if face is None or shared is None or face.shape != shared.shape:
            continue
        corr.append(np.corrcoef(cv2.equalizeHist(face).ravel(), shared.ravel().astype(float))[0, 1])
        path = str(Path(r["path"]).with_suffix(".png"))
        (a.out / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(a.out / path), face)
        written.append({**r, "path": path})
    cat.stdin.close()
    cat.wait()
    # One votes file serves every split written to OUT (train needs --val's votes beside it):
    # the other splits' rows already there are kept.
    votes = a.out / "ferplus.csv"
    kept = []
    if votes.is_file():
        with open(votes, newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if not r["path"].startswith(a.split + "/")]
    with open(votes, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(kept + written)
    c = np.asarray(corr)
    print(f"{len(written)} of the {len(rows)} {a.split} files written to {a.out / a.split} "
          f"(the others have no original in the snapshot); equalized original against the shared "
          f"copy: median correlation {np.median(c):.3f}, lowest {c.min():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
