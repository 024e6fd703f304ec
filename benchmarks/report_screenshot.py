"""A real sweep's report.html, photographed with headless Chromium (docs/report_screenshot.png).

Run:  python benchmarks/report_screenshot.py [--out docs/report_screenshot.png] [--keep DIR]

Runs `edgebench sweep` on the bundled model and its synthetic val set with onnxruntime and
openvino at fp32 and fp16 (small iteration counts, 20 scored images) into a temporary folder,
then `chromium --headless --screenshot` of the report.html it wrote, at 1400 px wide, and crops
the blank bottom off and shrinks the PNG until it is under 1 MB. Needs chromium (Debian:
`apt-get install -y chromium`), openvino and matplotlib. Numbers on the picture come from
whatever machine runs this; they are an illustration, not a measurement.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

MAX_BYTES = 1_000_000
SWEEP_ARGS = ("--backends", "onnxruntime,openvino", "--precisions", "fp32,fp16", "--threads", "1",
              "--warmup", "5", "--min-iterations", "200", "--min-duration", "1",
              "--max-eval-images", "20", "--timeout", "300")


def chromium() -> str:
    """The headless browser's executable, or exit with a hint."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium found: apt-get install -y chromium")


def sweep(out_dir: Path) -> Path:
    """Run the small sweep; returns its report.html."""
    cmd = [sys.executable, "-m", "bench", "sweep", "--out", str(out_dir), *SWEEP_ARGS]
    subprocess.run(cmd, check=False)  # exit 1 only when nothing ran; the HTML is there either way
    page = out_dir / "report.html"
    if not page.exists():
        sys.exit(f"the sweep wrote no {page}")
    return page


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 4000) -> None:
    """Headless Chromium screenshot of `page` (a tall window; the blank bottom is cropped later)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def shrink(src: Path, dst: Path) -> None:
    """Crop the white rows at the bottom, then scale down until the PNG is under MAX_BYTES."""
    img = cv2.imread(str(src))
    ink = np.where((img < 250).any(axis=(1, 2)))[0]
    img = img[: int(ink[-1]) + 24] if ink.size else img
    scale = 1.0
    while True:
        out = img if scale == 1.0 else cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if ok and (len(buf) < MAX_BYTES or scale < 0.3):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(buf.tobytes())
            print(f"{dst}: {out.shape[1]}x{out.shape[0]}, {len(buf) / 1e3:.0f} kB")
            return
        scale *= 0.85


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/report_screenshot.png"))
    ap.add_argument("--keep", type=Path, default=None, help="Sweep into this folder and keep it.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp) / "sweep"
        page = sweep(out_dir)
        raw = Path(tmp) / "raw.png"
        screenshot(page, raw)
        shrink(raw, args.out)


if __name__ == "__main__":
    main()
