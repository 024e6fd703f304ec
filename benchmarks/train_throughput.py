"""Training throughput of our detector: images/s on the CPU (model n, batch 16, imgsz 320 by default).

Run:  python benchmarks/train_throughput.py [--steps 24] [--warmup 4] [--precision 32-true]

Generates a small synthetic data set (edge_sdk.synth, seed 0) in a temporary folder, trains one
partial epoch with the same code path as `edgebench train` (mosaic on, EMA, gradient clipping,
2 data-loader workers, images cached in RAM), skips the first `--warmup` steps, and prints:
  - end-to-end images/s: steps x batch / wall time between the end of the warm-up and the last
    step (data loading, augmentation, optimizer and EMA included);
  - step-only images/s: the same images over the time spent inside the training steps;
  - the median step time and the machine.
Needs the `train` extra (torch + lightning).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L

from edge_sdk.host import host_facts
from edge_sdk.synth import generate
from trainer.train import TrainConfig, fit


class StepClock(L.Callback):
    """Times each training step after the first `warmup` ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.count, self.images = warmup, 0, 0
        self.steps: list[float] = []
        self.start = self.end = 0.0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.perf_counter()
        self.count += 1
        if self.count == self.warmup:
            self.start = now
        elif self.count > self.warmup:
            self.steps.append(now - self._t0)
            self.images += int(batch[0].shape[0])
            self.end = now


def run(steps: int, warmup: int, batch: int, imgsz: int, model: str, precision: str, workers: int) -> StepClock:
    """Train `warmup + steps` steps on fresh synthetic data; returns the clock."""
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp) / "data", train=batch * (steps + warmup), val=batch, imgsz=imgsz, seed=0)
        cfg = TrainConfig(data=str(data), model=model, imgsz=imgsz, batch=batch, epochs=1, workers=workers,
                          out_dir=str(Path(tmp) / "run"), accelerator="cpu", progress=False, cache=True,
                          precision=precision, limit_train_batches=steps + warmup, limit_val_batches=1)
        fit(cfg, callbacks=[clock])
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=4, help="untimed first steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--model", default="n", choices=["n", "s", "m"])
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 5 or args.warmup < 1:
        parser.error("--steps must be >= 5 and --warmup >= 1")
    clock = run(args.steps, args.warmup, args.batch, args.imgsz, args.model, args.precision, args.workers)
    if not clock.steps:
        raise SystemExit("error: no timed steps ran")
    wall = clock.end - clock.start
    h = host_facts()
    import torch

    print(f"training throughput, model {args.model}, batch {args.batch}, imgsz {args.imgsz}, "
          f"{args.precision}, {len(clock.steps)} timed steps after {args.warmup} warm-up")
    print(f"end-to-end: {clock.images / wall:.1f} images/s (data loading and augmentation included)")
    print(f"step-only:  {clock.images / sum(clock.steps):.1f} images/s; "
          f"median step {statistics.median(clock.steps) * 1000:.0f} ms")
    print(f"CPU: {h['cpu_model']}, {h['physical_cores']} physical cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); Python {h['python']}")


if __name__ == "__main__":
    main()
