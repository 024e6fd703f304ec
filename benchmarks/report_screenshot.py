"""A real sweep's report.html, photographed with headless Chromium (docs/report_screenshot.png).

Run:  python benchmarks/report_screenshot.py [--out docs/report_screenshot.png] [--keep DIR]
      (a quick look: --backends onnxruntime --precisions fp32 --min-iterations 5 --max-eval-images 2)

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
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: the sweep's fixed settings; backends, precisions, iterations and scored images are options of this script
SWEEP_ARGS = ("--threads", "1", "--warmup", "5", "--min-duration", "1", "--timeout", "300")


def find_chromium() -> str | None:
    """The headless browser's executable, or None when none of BROWSERS is on PATH."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def chromium() -> str:
    """The headless browser's executable, or exit with a hint."""
    return find_chromium() or sys.exit("no chromium found: apt-get install -y chromium")


def sweep(out_dir: Path, args: argparse.Namespace) -> Path:
    """Run the small sweep; returns its report.html."""
    cmd = [sys.executable, "-m", "bench", "sweep", "--out", str(out_dir), "--overwrite", *SWEEP_ARGS,
           "--backend", args.backends, "--precisions", args.precisions,
           "--min-iterations", str(args.min_iterations), "--max-images", str(args.max_eval_images)]
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
    ap.add_argument("--backends", default="onnxruntime,openvino", help="sweep backends, comma-separated")
    ap.add_argument("--precisions", default="fp32,fp16", help="sweep precisions, comma-separated")
    ap.add_argument("--min-iterations", type=int, default=200, help="timed iterations per configuration")
    ap.add_argument("--max-eval-images", type=int, default=20, help="images scored per configuration")
    args = ap.parse_args()
    chromium()  # fail before the sweep, not after it
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp) / "sweep"
        page = sweep(out_dir, args)
        raw = Path(tmp) / "raw.png"
        screenshot(page, raw)
        shrink(raw, args.out)


if __name__ == "__main__":
    main()
