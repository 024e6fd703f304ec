"""A YOLOv8-architecture ONNX graph with seeded random weights (numpy + onnx only, no torch).

Written from the published architecture description: Conv = conv + folded BN + SiLU; C2f
(split, bottlenecks, concat); SPPF with three chained 5x5 max pools; a PAN neck with nearest
2x upsampling; a decoupled anchor-free head per stride (8, 16, 32) whose box branch predicts a
16-bin distribution (DFL) for each side. The output is [B, 4+nc, N]: cx, cy, w, h in input
pixels, then sigmoid class scores.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from testkit.graph import GraphBuilder

REG_MAX = 16
STRIDES = (8, 16, 32)
#: Std of the last class conv's output; with CLS_BIAS most scores stay low and a few exceed 0.25.
CLS_LOGIT_STD = 0.5
CLS_BIAS = -4.0
#: Std of the box-bin logits (before the softmax over 16 bins).
BOX_LOGIT_STD = 1.5


class Feat(NamedTuple):
    """A tensor in the graph: its name and channel count."""

    name: str
    c: int


class Probe(NamedTuple):
    """A conv whose weight scale is fitted in-graph: layer name, the scalar scale output, target std."""

    layer: str
    scale: str
    target: float


def _channels(c: int, width: float, max_channels: int = 1024) -> int:
    """Scaled channel count, rounded up to a multiple of 8."""
    return int(math.ceil(min(c, max_channels) * width / 8) * 8)


def _repeats(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class Yolov8Builder:
    """Adds YOLOv8 blocks to a GraphBuilder with seeded He-normal weights times per-layer `scales`.

    With `calibrate=True` each conv's scale is computed in the graph from its output's std
    (Conv -> Mul(target / std) -> Add(bias)) and listed in `probes`: one forward pass then fits
    every layer in graph order (sequential LSUV).
    """

    def __init__(self, g: GraphBuilder, rng: np.random.Generator, scales: dict[str, float] | None = None,
                 calibrate: bool = False) -> None:
        self.g, self.rng = g, rng
        self.scales = scales or {}
        self.calibrate = calibrate
        self.probes: list[Probe] = []
        self._layer = 0

    def conv2d(self, x: Feat, cout: int, k: int = 1, s: int = 1, target: float = 1.0,
               bias: np.ndarray | None = None) -> Feat:
        """Plain convolution with bias (no activation); its output std is fitted to `target`."""
        self._layer += 1
        layer = f"layer{self._layer}"
        w = self.rng.normal(0.0, math.sqrt(2.0 / (x.c * k * k)), (cout, x.c, k, k))
        b = (bias if bias is not None else self.rng.normal(0.0, 0.05, cout)).astype(np.float32)
        p = k // 2
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
        if not self.calibrate:
            w_name = self.g.const(f"{layer}.weight", (w * self.scales.get(layer, 1.0)).astype(np.float32))
            y = self.g.node("Conv", [x.name, w_name, self.g.const(f"{layer}.bias", b)], **attrs)
            return Feat(y, cout)
        y = self.g.node("Conv", [x.name, self.g.const(f"{layer}.weight", w.astype(np.float32))], **attrs)
        scale = self._fitted_scale(y, target)
        self.probes.append(Probe(layer, scale, target))
        bias_name = self.g.const(f"{layer}.bias", b.reshape(cout, 1, 1))
        return Feat(self.g.node("Add", [self.g.node("Mul", [y, scale]), bias_name]), cout)

    def _fitted_scale(self, y: str, target: float) -> str:
        """target / std(y), rounded to a step of 2**(1/32) (so the weights do not hang on last bits)."""
        g, c = self.g, self.g.const
        mean, mean_sq = (g.node("ReduceMean", [t], keepdims=0) for t in (y, g.node("Mul", [y, y])))
        var = g.node("Sub", [mean_sq, g.node("Mul", [mean, mean])])
        std = g.node("Sqrt", [g.node("Max", [var, c(f"const.eps{self._layer}", np.array(1e-12, np.float32))])])
        log_ratio = g.node("Log", [g.node("Div", [c(f"const.target{self._layer}", np.array(target, np.float32)), std])])
        steps = g.node("Round", [g.node("Mul", [log_ratio, c(f"const.k{self._layer}", np.float32(32 / math.log(2)))])])
        return g.node("Exp", [g.node("Mul", [steps, c(f"const.step{self._layer}", np.float32(math.log(2) / 32))])])

    def conv(self, x: Feat, cout: int, k: int = 1, s: int = 1) -> Feat:
        """Conv + folded BN + SiLU (SiLU written as x * sigmoid(x))."""
        y = self.conv2d(x, cout, k, s).name
        return Feat(self.g.node("Mul", [y, self.g.node("Sigmoid", [y])]), cout)

    def concat(self, xs: list[Feat], axis: int = 1) -> Feat:
        return Feat(self.g.node("Concat", [x.name for x in xs], axis=axis), sum(x.c for x in xs))

    def bottleneck(self, x: Feat, shortcut: bool) -> Feat:
        y = self.conv(self.conv(x, x.c, 3), x.c, 3)
        return Feat(self.g.node("Add", [x.name, y.name]), x.c) if shortcut else y

    def c2f(self, x: Feat, cout: int, n: int, shortcut: bool) -> Feat:
        """1x1 conv to 2c, split in two, chain n bottlenecks on the second half, concat all, 1x1 conv."""
        c = cout // 2
        y = self.conv(x, 2 * c, 1)
        split = self.g.const(f"const.split{self._layer}", np.array([c, c], np.int64))
        parts = [Feat(name, c) for name in self.g.node_multi("Split", [y.name, split], 2, axis=1)]
        for _ in range(n):
            parts.append(self.bottleneck(parts[-1], shortcut))
        return self.conv(self.concat(parts), cout, 1)

    def sppf(self, x: Feat, cout: int) -> Feat:
        """1x1 conv to c/2, three chained 5x5 max pools, concat the four, 1x1 conv."""
        y = [self.conv(x, x.c // 2, 1)]
        for _ in range(3):
            pooled = self.g.node("MaxPool", [y[-1].name], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
            y.append(Feat(pooled, y[-1].c))
        return self.conv(self.concat(y), cout, 1)

    def upsample(self, x: Feat) -> Feat:
        scales = self.g.const(f"const.scales{self._layer}", np.array([1, 1, 2, 2], np.float32))
        y = self.g.node("Resize", [x.name, "", scales], mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return Feat(y, x.c)

    def backbone_neck(self, image: str, width: float, depth: float) -> list[Feat]:
        """Backbone + PAN neck; returns the P3, P4, P5 feature maps (strides 8, 16, 32)."""
        c1, c2, c3, c4, c5 = (_channels(c, width) for c in (64, 128, 256, 512, 1024))
        x = self.conv(self.conv(Feat(image, 3), c1, 3, 2), c2, 3, 2)
        x = self.c2f(x, c2, _repeats(3, depth), True)
        p3 = self.c2f(self.conv(x, c3, 3, 2), c3, _repeats(6, depth), True)
        p4 = self.c2f(self.conv(p3, c4, 3, 2), c4, _repeats(6, depth), True)
        p5 = self.c2f(self.conv(p4, c5, 3, 2), c5, _repeats(3, depth), True)
        p5 = self.sppf(p5, c5)
        n = _repeats(3, depth)
        h4 = self.c2f(self.concat([self.upsample(p5), p4]), c4, n, False)
        o3 = self.c2f(self.concat([self.upsample(h4), p3]), c3, n, False)
        o4 = self.c2f(self.concat([self.conv(o3, c3, 3, 2), h4]), c4, n, False)
        o5 = self.c2f(self.concat([self.conv(o4, c4, 3, 2), p5]), c5, n, False)
        return [o3, o4, o5]

    def head_level(self, x: Feat, nc: int, c_box: int, c_cls: int) -> str:
        """One stride's decoupled head: [B, 4*REG_MAX + nc, h*w] (box bin logits, then class logits)."""
        box = self.conv(self.conv(x, c_box, 3), c_box, 3)
        # Bin logits fall with the bin index, so most predicted distances are a few strides.
        bins = np.tile(-0.3 * np.arange(REG_MAX), 4) + self.rng.normal(0.0, 0.1, 4 * REG_MAX)
        box = self.conv2d(box, 4 * REG_MAX, 1, target=BOX_LOGIT_STD, bias=bins)
        cls = self.conv(self.conv(x, c_cls, 3), c_cls, 3)
        cls = self.conv2d(cls, nc, 1, target=CLS_LOGIT_STD, bias=CLS_BIAS + self.rng.normal(0.0, 0.3, nc))
        shape = self.g.const(f"const.flat{self._layer}", np.array([0, 4 * REG_MAX + nc, -1], np.int64))
        return self.g.node("Reshape", [self.concat([box, cls]).name, shape])

    def detect(self, feats: list[Feat], nc: int, imgsz: tuple[int, int]) -> str:
        """Decoupled head on every level, DFL decode and anchor/stride scaling -> [B, 4+nc, N]."""
        c_box = max(16, feats[0].c // 4, 4 * REG_MAX)
        c_cls = max(feats[0].c, min(nc, 100))
        flat = self.g.node("Concat", [self.head_level(x, nc, c_box, c_cls) for x in feats], axis=2)
        sizes = self.g.const("const.head_split", np.array([4 * REG_MAX, nc], np.int64))
        box, cls = self.g.node_multi("Split", [flat, sizes], 2, axis=1)
        return self.g.node("Concat", [self.dfl_boxes(box, imgsz), self.g.node("Sigmoid", [cls])], axis=1)

    def dfl_boxes(self, box: str, imgsz: tuple[int, int]) -> str:
        """Softmax over 16 bins per side, expectation by a 1x1 conv with weights 0..15, then to cx,cy,w,h px."""
        g = self.g
        bins = g.node("Reshape", [box, g.const("const.bins_shape", np.array([0, 4, REG_MAX, -1], np.int64))])
        prob = g.node("Softmax", [g.node("Transpose", [bins], perm=[0, 2, 1, 3])], axis=1)
        proj = g.const("const.dfl_proj", np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1))
        dist = g.node("Reshape", [g.node("Conv", [prob, proj]),
                                  g.const("const.dist_shape", np.array([0, 4, -1], np.int64))])
        lt, rb = g.node_multi("Split", [dist, g.const("const.lt_rb", np.array([2, 2], np.int64))], 2, axis=1)
        anchors, strides = anchor_grid(imgsz)
        a = g.const("const.anchors", anchors)
        x1y1, x2y2 = g.node("Sub", [a, lt]), g.node("Add", [a, rb])
        half = g.const("const.half", np.array(0.5, np.float32))
        cxcy = g.node("Mul", [g.node("Add", [x1y1, x2y2]), half])
        wh = g.node("Sub", [x2y2, x1y1])
        return g.node("Mul", [g.node("Concat", [cxcy, wh], axis=1), g.const("const.strides", strides)])


def anchor_grid(imgsz: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points [1, 2, N] (cell centres, in grid units) and strides [1, 1, N] for all levels."""
    points, strides = [], []
    for s in STRIDES:
        h, w = imgsz[0] // s, imgsz[1] // s
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(h * w, s))
    return (np.concatenate(points, 1)[None].astype(np.float32),
            np.concatenate(strides)[None, None].astype(np.float32))
