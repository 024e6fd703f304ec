"""ONNX graph rewrites: each pattern on a small graph (before/after on ONNX Runtime), the bundled model
and the YOLOv8 fixture under the exact rewrites, the registry's errors and results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from converters.rewrites import REWRITES, apply_rewrites, parse_names, rewritten_onnx
from converters.rewrites_graph import is_topologically_sorted
from converters.rewrites_ops import REPLICATING
from runtimes.errors import RewriteError
from testkit.graph import GraphBuilder, float_input

ort = pytest.importorskip("onnxruntime", reason="the before/after comparison runs on ONNX Runtime")
BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"
BINS = np.arange(16, dtype=np.float32)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=False))


def random_feeds(model: onnx.ModelProto, batch: int = 1, scale: float = 3.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value or batch for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return feeds


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def rewrite_checked(model: onnx.ModelProto, name: str, batch: int = 1) -> tuple[onnx.ModelProto, int, float]:
    """(rewritten model, sites, max abs difference of the outputs on random inputs); checks validity."""
    out, results = apply_rewrites(model, [name])
    onnx.checker.check_model(out)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    assert is_topologically_sorted(out)
    feeds = random_feeds(model, batch)
    return out, results[0].sites, max_diff(run(model, feeds), run(out, feeds))


def finish(g: GraphBuilder, x_shape: list, y: str, y_shape: list, opset: int = 17) -> onnx.ModelProto:
    g.nodes.append(helper.make_node("Identity", [y], ["y"]))
    model = g.model([float_input("x", x_shape)], [float_input("y", y_shape)], {}, "t")
    model.opset_import[0].version = opset
    return model


# --- dfl_4d -------------------------------------------------------------------------------------

def dfl_5d_reducesum(keepdims: int, batch: int | str = 1) -> onnx.ModelProto:
    """[b,64,4,5] -> Reshape [b,4,16,4,5] -> Softmax(2) -> * bins -> ReduceSum(2) -> [b,4,4,5] / [b,4,20]."""
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s5", np.array([0, 4, 16, 4, 5], np.int64))])
    p = g.node("Mul", [g.const("bins", BINS.reshape(16, 1, 1)), g.node("Softmax", [r], axis=2)])
    e = g.node("ReduceSum", [p, g.const("ax", np.array([2], np.int64))], keepdims=keepdims)
    if keepdims:
        e = g.node("Reshape", [e, g.const("s3", np.array([0, 4, 20], np.int64))])
    return finish(g, [batch, 64, 4, 5], e, [batch, 4, 20] if keepdims else [batch, 4, 4, 5])


def dfl_5d_conv3d() -> onnx.ModelProto:
    """Reshape [1,4,16,3,5] -> Transpose -> Softmax(1) -> Conv3d 1x1x1 (bins) -> [1,1,4,3,5] -> Reshape [1,4,15]."""
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s5", np.array([1, 4, 16, 3, 5], np.int64))])
    t = g.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
    c = g.node("Conv", [g.node("Softmax", [t], axis=1), g.const("w", BINS.reshape(1, 16, 1, 1, 1))])
    e = g.node("Reshape", [c, g.const("s3", np.array([1, 4, 15], np.int64))])
    return finish(g, [1, 64, 3, 5], e, [1, 4, 15])


def dfl_5d_permuted() -> onnx.ModelProto:
    """A 5-D transpose that also moves the sides past the rows: [1,4,16,3,5] -> [1,3,16,4,5]."""
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s5", np.array([1, 4, 16, 3, 5], np.int64))])
    t = g.node("Transpose", [r], perm=[0, 3, 2, 1, 4])
    p = g.node("Mul", [g.node("Softmax", [t], axis=2), g.const("bins", BINS.reshape(1, 1, 16, 1, 1))])
    e = g.node("ReduceSum", [p, g.const("ax", np.array([-3], np.int64))], keepdims=0)
    return finish(g, [1, 64, 3, 5], e, [1, 3, 4, 5])


def dfl_4d_reducesum() -> onnx.ModelProto:
    """Ultralytics' flattened head with the ReduceSum form: [1,64,20] -> [1,4,16,20] -> Softmax(2) -> sum."""
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s4", np.array([1, 4, 16, 20], np.int64))])
    p = g.node("Mul", [g.node("Softmax", [r], axis=2), g.const("bins", BINS.reshape(16, 1))])
    e = g.node("ReduceSum", [p, g.const("ax", np.array([2], np.int64))], keepdims=0)
    return finish(g, [1, 64, 20], e, [1, 4, 20])


def dfl_canonical() -> onnx.ModelProto:
    """Already 4-D: Reshape [1,4,16,20] -> Transpose -> Softmax(1) -> 1x1 Conv -> Reshape [1,4,20]."""
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s4", np.array([1, 4, 16, 20], np.int64))])
    t = g.node("Transpose", [r], perm=[0, 2, 1, 3])
    c = g.node("Conv", [g.node("Softmax", [t], axis=1), g.const("w", BINS.reshape(1, 16, 1, 1))])
    return finish(g, [1, 64, 20], g.node("Reshape", [c, g.const("s3", np.array([1, 4, 20], np.int64))]), [1, 4, 20])


def ranks(model: onnx.ModelProto) -> set[int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return {len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}


@pytest.mark.parametrize("build", [lambda: dfl_5d_reducesum(0), lambda: dfl_5d_reducesum(1), dfl_5d_conv3d,
                                   dfl_5d_permuted, dfl_4d_reducesum],
                         ids=["5d-sum", "5d-sum-keepdims", "5d-conv3d", "5d-permuted", "4d-sum"])
def test_dfl_4d_is_exact_and_leaves_no_5d_tensor(build) -> None:
    model = build()
    out, sites, diff = rewrite_checked(model, "dfl_4d")
    assert sites == 1 and diff < 1e-5
    assert max(ranks(out)) <= 4
    assert "ReduceSum" not in op_types(out) and op_types(out).count("Conv") == 1


def test_dfl_4d_keeps_a_symbolic_batch() -> None:
    model = dfl_5d_reducesum(0, batch="batch")
    out, sites, diff = rewrite_checked(model, "dfl_4d", batch=3)
    assert sites == 1 and diff < 1e-5 and max(ranks(out)) <= 4


def test_dfl_4d_leaves_the_4d_conv_form_alone() -> None:
    model = dfl_canonical()
    out, results = apply_rewrites(model, "dfl_4d")
    assert results[0].sites == 0 and op_types(out) == op_types(model)


def test_dfl_4d_needs_the_bins_along_the_softmax_axis() -> None:
    g = GraphBuilder()
    r = g.node("Reshape", ["x", g.const("s4", np.array([1, 4, 16, 20], np.int64))])
    p = g.node("Mul", [g.node("Softmax", [r], axis=2), g.const("w", np.arange(20, dtype=np.float32))])
    e = g.node("ReduceSum", [p, g.const("ax", np.array([2], np.int64))], keepdims=0)
    _, results = apply_rewrites(finish(g, [1, 64, 20], e, [1, 4, 20]), "dfl_4d")
    assert results[0].sites == 0


# --- upsample_d2s -------------------------------------------------------------------------------

def upsample(mode: tuple[str, str], by_sizes: bool = False, factor: int = 2, batch: int | str = 1) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.node("Conv", ["x", g.const("w", np.random.default_rng(1).standard_normal((6, 3, 1, 1)).astype(np.float32))])
    scales = np.array([1, 1, factor, factor], np.float32)
    if by_sizes:
        ins = [x, "", "", g.const("sizes", np.array([1, 6, 4 * factor, 5 * factor], np.int64))]
    else:
        ins = [x, "", g.const("scales", scales)]
    y = g.node("Resize", ins, mode="nearest", coordinate_transformation_mode=mode[0], nearest_mode=mode[1])
    y = g.node("Add", [y, g.node("Resize", ins, mode="nearest", coordinate_transformation_mode=mode[0],
                                   nearest_mode=mode[1])])
    return finish(g, [batch, 3, 4, 5], y, [batch, 6, 4 * factor, 5 * factor])


@pytest.mark.parametrize("mode", sorted(REPLICATING), ids="-".join)
@pytest.mark.parametrize("by_sizes", [False, True], ids=["scales", "sizes"])
def test_upsample_d2s_is_exact(mode: tuple[str, str], by_sizes: bool) -> None:
    out, sites, diff = rewrite_checked(upsample(mode, by_sizes), "upsample_d2s")
    assert sites == 2 and diff < 1e-5
    assert "Resize" not in op_types(out) and op_types(out).count("DepthToSpace") == 2
    d2s = [n for n in out.graph.node if n.op_type == "DepthToSpace"][0]
    assert {a.name: helper.get_attribute_value(a) for a in d2s.attribute} == {"blocksize": 2, "mode": b"DCR"}


def test_upsample_d2s_dynamic_batch() -> None:
    _, sites, diff = rewrite_checked(upsample(("asymmetric", "floor"), batch="n"), "upsample_d2s", batch=2)
    assert sites == 2 and diff < 1e-5


@pytest.mark.parametrize("mode,factor", [(("asymmetric", "round_prefer_ceil"), 2), (("half_pixel", "floor"), 2),
                                         (("asymmetric", "floor"), 3)], ids=["shifted", "half-floor", "x3"])
def test_upsample_d2s_skips_resizes_it_cannot_match(mode: tuple[str, str], factor: int) -> None:
    out, results = apply_rewrites(upsample(mode, factor=factor), ["upsample_d2s"])
    assert results[0].sites == 0 and op_types(out).count("Resize") == 2


# --- silu_hardswish -----------------------------------------------------------------------------

def silu_graph(opset: int = 17) -> onnx.ModelProto:
    g = GraphBuilder()
    a = g.node("Mul", ["x", g.node("Sigmoid", ["x"])])
    b = g.node("Mul", [g.node("Sigmoid", [a]), a])
    return finish(g, [1, 3, 4, 5], b, [1, 3, 4, 5], opset)


def hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x / 6 + 0.5, 0, 1)


@pytest.mark.parametrize("opset", [17, 13])
def test_silu_hardswish_changes_the_function(opset: int) -> None:
    model = silu_graph(opset)
    out, results = apply_rewrites(model, "silu_hardswish")
    assert results[0].sites == 2 and results[0].exact is False and not REWRITES["silu_hardswish"].exact
    assert "Sigmoid" not in op_types(out)
    feeds = random_feeds(model)
    assert max_diff(run(model, feeds), run(out, feeds)) > 1e-2
    np.testing.assert_allclose(run(out, feeds)[0], hardswish(hardswish(feeds["x"])), rtol=1e-5, atol=1e-5)


# --- registry, files, real models ---------------------------------------------------------------

def test_unknown_rewrite_names_the_valid_ones() -> None:
    with pytest.raises(RewriteError) as info:
        apply_rewrites(silu_graph(), "dfl_4d,nope")
    assert "nope" in str(info.value) and all(name in str(info.value) for name in REWRITES)
    assert parse_names(" dfl_4d, upsample_d2s,dfl_4d ") == ["dfl_4d", "upsample_d2s"]


def test_zero_sites_is_a_result_and_the_input_is_unchanged() -> None:
    model = silu_graph()
    before = model.SerializeToString()
    out, results = apply_rewrites(model, ["upsample_d2s", "dfl_4d", "silu_hardswish"])
    assert [(r.name, r.sites, r.exact) for r in results] == [
        ("upsample_d2s", 0, True), ("dfl_4d", 0, True), ("silu_hardswish", 2, False)]
    assert model.SerializeToString() == before
    assert "0 sites (exact)" in results[0].summary() and "function-changing" in results[2].summary()


@pytest.mark.parametrize("which", ["bundled", "fixture"])
def test_real_models_keep_their_outputs_under_the_exact_rewrites(which: str, small_model: Path,
                                                                tmp_path: Path) -> None:
    src = BUNDLED if which == "bundled" else small_model
    path, results = rewritten_onnx(src, "dfl_4d,upsample_d2s", tmp_path)
    assert path.name == src.name and path.parent == tmp_path
    before, after = onnx.load(str(src)), onnx.load(str(path))
    assert {r.name: r.sites for r in results} == {"dfl_4d": 0, "upsample_d2s": 2}
    assert "Resize" not in op_types(after) and max(ranks(after)) <= 4
    assert after.metadata_props == before.metadata_props
    feeds = random_feeds(before, scale=1.0)
    ref = run(before, feeds)
    assert max_diff(ref, run(after, feeds)) <= 1e-5 * max(1.0, float(np.abs(ref[0]).max()))
