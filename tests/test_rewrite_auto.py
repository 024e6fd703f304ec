"""`--rewrite auto`: the decision rule, and a TFLite export that keeps upsample_d2s because XNNPACK takes more ops."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import run_cli

from converters.rewrite_auto import decide, interleaved_medians
from runtimes.tflite_delegation import Delegation

PLAIN = Delegation(252, 250, 3, {"RESIZE_NEAREST_NEIGHBOR": 2})
FULL = Delegation(262, 262, 1, {})


def test_more_ops_delegated_is_applied_unless_slower() -> None:
    assert decide(PLAIN, FULL, 10.0, 10.1) == (True, "more ops delegated")
    assert decide(PLAIN, FULL, 10.0, 11.0) == (False, "slower")


def test_fewer_ops_delegated_is_refused_even_if_faster() -> None:
    assert decide(FULL, PLAIN, 10.0, 8.0) == (False, "fewer ops delegated")


def test_without_delegation_only_a_real_latency_gain_counts() -> None:
    assert decide(None, None, 10.0, 9.0) == (True, "10% faster")
    applied, why = decide(None, None, 10.0, 9.9)
    assert not applied and why.startswith("no measurable gain")


def test_interleaved_medians_time_both_callables() -> None:
    calls = {"a": 0, "b": 0}
    ma, mb = interleaved_medians(lambda: calls.__setitem__("a", calls["a"] + 1),
                                 lambda: calls.__setitem__("b", calls["b"] + 1), runs=5, warmup=2)
    assert calls == {"a": 7, "b": 7} and ma >= 0 and mb >= 0


@pytest.mark.slow
def test_auto_keeps_upsample_d2s_for_tflite(small_model: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("needs litert-torch and ai-edge-litert (edgebench[tflite,tflite-export])")
    out = tmp_path / "m.tflite"
    proc = run_cli("export", "--model", str(small_model), "--to", "tflite", "-o", str(out), "--rewrite", "auto",
                   "--threads", "1", "--parity-images", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trial = next(line for line in proc.stdout.splitlines() if line.startswith("rewrite upsample_d2s ("))
    assert "RESIZE_NEAREST_NEIGHBOR" in trial and trial.endswith("applied (more ops delegated)")
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert [r["name"] for r in side["rewrites"]] == ["upsample_d2s"]
    assert side["rewrite_trials"][0]["applied"] is True
