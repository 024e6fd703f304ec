"""The detector network: sizes of n/s/m, output layouts, activations, anchor grid."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'edgebench[train]')")

from trainer.head import dist_to_box, make_anchors  # noqa: E402
from trainer.model import build_model  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_n_model_has_yolov8n_size_at_80_classes() -> None:
    assert abs(n_params(build_model("n", 80)) - 3.157e6) < 0.01e6


def test_scales_grow_and_unknown_scale_is_rejected() -> None:
    assert n_params(build_model("n", 5)) < n_params(build_model("s", 5))
    with pytest.raises(ValueError, match="scale"):
        build_model("x", 5)


def test_train_forward_returns_raw_maps_per_stride() -> None:
    model = build_model("n", 3).train()
    maps = model(torch.zeros(2, 3, 128, 96))
    assert [tuple(m.shape) for m in maps] == [(2, 64 + 3, 16, 12), (2, 67, 8, 6), (2, 67, 4, 3)]


def test_eval_forward_is_yolov8_layout_in_input_pixels() -> None:
    model = build_model("n", 3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert out.shape == (1, 7, 16 * 16 + 8 * 8 + 4 * 4)
    scores = out[0, 4:]
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    cx, cy, w, h = out[0, :4]
    assert float(w.min()) > 0 and float(h.min()) > 0
    # box centres stay near their cell: cell 0 of stride 8 is centred at (4, 4)
    assert abs(float(cx[0]) - 4) < 8 * 16 and abs(float(cy[0]) - 4) < 8 * 16


def test_eval_output_decodes_known_distances() -> None:
    model = build_model("n", 2).eval()
    head = model.head
    for conv in head.box:  # logits that put all mass on bin 3 for every side
        torch.nn.init.zeros_(conv[-1].weight)
        bias = torch.full((4, 16), -20.0)
        bias[:, 3] = 20.0
        conv[-1].bias.data = bias.flatten()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    # first cell of stride 8: centre (4, 4), distances 3 cells each side -> w = h = 6 * 8 = 48
    assert torch.allclose(out[0, :4, 0], torch.tensor([4.0, 4.0, 48.0, 48.0]), atol=1e-3)
    # first cell of stride 32 (after 8x8 + 4x4 cells): centre (16, 16), w = 6 * 32
    assert torch.allclose(out[0, :4, 80], torch.tensor([16.0, 16.0, 192.0, 192.0]), atol=1e-3)


@pytest.mark.parametrize("act", ["relu", "hardswish"])
def test_activation_is_selectable(act: str) -> None:
    model = build_model("n", 2, act=act)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"relu": "ReLU", "hardswish": "Hardswish"}[act] in kinds
    assert "SiLU" not in kinds


def test_anchor_centres_and_strides() -> None:
    points, strides = make_anchors([(2, 3), (1, 1)], (8, 16), torch.float32, torch.device("cpu"))
    assert points[:3].tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5]]
    assert points[-1].tolist() == [0.5, 0.5] and strides[:, 0].tolist() == [8] * 6 + [16]
    box = dist_to_box(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0, 10.0]]), xywh=False)
    assert box.tolist() == [[9.0, 8.0, 13.0, 14.0]]
