"""Per-layer sensitivity on ONNX Runtime (calibration.sensitivity): the ranking on the bundled model gives
finite SQNRs, sorted, none of them an excluded layer; the greedy choice stops at the right step."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from calibration.dataset import build_calibration_set
from calibration.exclusions import decode_tail
from calibration.onnx_prep import float32_onnx
from calibration.sensitivity import LayerSensitivity, choose_exclusions, format_table, rank_layers, sqnr_db
from edge_sdk.synth import generate

BUNDLED = Path(__file__).resolve().parents[1] / "edge_sdk" / "assets" / "default_model.onnx"


def test_sqnr_is_per_output_channel_unless_asked_for_the_whole_tensor() -> None:
    ref = np.zeros((2, 1, 3, 5))
    ref[:, :, 0] = 100.0  # a box row in pixels
    ref[:, :, 1:] = 0.5  # score rows
    q = ref.copy()
    q[:, :, 1:] += 0.05  # every score off by 10 %: 20 dB
    assert sqnr_db(ref, q, whole_output=True) > 50  # the pixels drown the scores' error
    assert math.isclose(sqnr_db(ref, q), (120 + 20 + 20) / 3)  # an exact row counts as the 120 dB ceiling
    assert sqnr_db(ref, ref) == 120.0


def test_ranking_on_the_bundled_model(tmp_path: Path) -> None:
    logging.getLogger().setLevel(logging.ERROR)
    data = generate(tmp_path / "data", train=8, val=1, imgsz=320, seed=3) / "data.yaml"
    source = float32_onnx(BUNDLED, tmp_path / "f32.onnx")
    tail = decode_tail(onnx.load(str(source)))
    start = time.perf_counter()
    ranked = rank_layers(source, build_calibration_set(data, 320, limit=8), base_exclude=tail, probe_images=4,
                         candidates=5)
    assert time.perf_counter() - start < 120
    assert len(ranked) == 5 and not {r.node for r in ranked} & set(tail)
    assert all(math.isfinite(r.sqnr_db) and math.isfinite(r.gain_db) and math.isfinite(r.local_loss_db)
               for r in ranked)
    assert [r.gain_db for r in ranked] == sorted((r.gain_db for r in ranked), reverse=True)
    assert len({round(r.sqnr_db - r.gain_db, 6) for r in ranked}) == 1  # one all-int8 baseline for all
    assert 10 < ranked[0].sqnr_db - ranked[0].gain_db < 60  # the all-int8 output: damaged but not destroyed
    # the edges come first in the shortlist: the stem (reads the image) and the head concats (feed the tail)
    assert {"/backbone/stem/conv/Conv", "/head/Concat"} <= {r.node for r in ranked}
    table = format_table(ranked, top=3)
    assert table.count("\n") == 4 and f"`{ranked[0].node}`" in table.splitlines()[2]


def _fake(gains: list[float]) -> list[LayerSensitivity]:
    return [LayerSensitivity(f"L{i}", "Conv", 30.0 + g, g) for i, g in enumerate(gains)]


def test_choose_exclusions_stops_at_the_first_step_that_reaches_the_target() -> None:
    calls: list[tuple[str, ...]] = []

    def score(added: tuple[str, ...]) -> float:
        calls.append(added)
        return 0.60 + 0.012 * len(added)  # 0.600, 0.612, 0.624, 0.636, ...

    added, history = choose_exclusions(_fake([3.0, 2.0, 1.0, 0.5, 0.2]), score, baseline=0.64, max_drop_rel=0.01)
    assert added == ("L0", "L1", "L2")  # the target is 0.6336: 0.624 is short of it, 0.636 reaches it
    assert calls == [(), ("L0",), ("L0", "L1"), ("L0", "L1", "L2")]  # nothing scored after the target is met
    assert [round(s, 3) for _, s in history] == [0.6, 0.612, 0.624, 0.636]


@pytest.mark.parametrize(("baseline", "expected_steps"), [(0.60, 0), (0.6336 / 0.99, 3)])
def test_choose_exclusions_counts_steps(baseline: float, expected_steps: int) -> None:
    def score(added: tuple[str, ...]) -> float:
        return 0.60 + 0.012 * len(added)

    added, history = choose_exclusions(_fake([3.0, 2.0, 1.0, 0.5]), score, baseline=baseline)
    assert len(added) == expected_steps and len(history) == expected_steps + 1
    assert history[0] == ((), 0.60)


def test_choose_exclusions_skips_useless_layers_and_respects_max_added() -> None:
    def score(added: tuple[str, ...]) -> float:
        return {(): 0.5, ("L0",): 0.55, ("L0", "L2"): 0.52}.get(added, 0.5)

    added, history = choose_exclusions(_fake([1.0, -0.1, 0.5, 0.4]), score, baseline=0.7, max_added=2)
    assert [a for a, _ in history] == [(), ("L0",), ("L0", "L2")]  # L1 has no gain; stops after 2 added
    assert added == ("L0",)  # the target was never met: the shortest prefix with the best score
