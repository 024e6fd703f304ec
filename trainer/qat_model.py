"""Fake quantization for QAT with NNCF's PyTorch backend: insert the quantizers, set their ranges from the
calibration images, and freeze BN statistics or the quantizers later.

Why NNCF (and not the PT2E flow): it is already the OpenVINO quantizer of this project, it wraps our eager
`YoloDetector` in place (training mode keeps returning the per-level maps the loss needs, no graph capture),
its quantizer ranges are trainable parameters (learned scales, not observers), and its quantizers export to ONNX
QuantizeLinear/DequantizeLinear pairs that every int8 backend reads.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from runtimes.errors import InputError

#: Each int8 target's scheme: weights always int8 per output channel, symmetric (255 levels); activations int8
#: per tensor, asymmetric (uint8 + zero point: ORT's U8S8 fast path, TFLite's int8 zero points, OpenVINO) or
#: symmetric (TensorRT's explicit quantization, ncnn's single scale).
SYMMETRIC_ACTIVATIONS = {"tensorrt": True, "ncnn": True, "onnxruntime": False, "openvino": False, "tflite": False}
TARGETS = tuple(SYMMETRIC_ACTIVATIONS)
#: The targets that run with no float layer (nothing excluded unless asked).
FULL_INTEGER = ("tflite",)

#: Our detector's head in NNCF's op names: the first two conv blocks of each branch ("head/0/...", "head/1/...")
#: are quantized; the rest of "head/" (the branches' last 1x1 convs, the per-level concat and the decode tail)
#: is what `calibration.exclusions.auto_exclusion` keeps float in an ONNX export.
_HEAD_QUANTIZED = re.compile(r"^head/[01]/")
#: `--exclude decode`: only the box arithmetic after the DFL (anchor points, strides, the distance-to-box
#: adds and subtractions), the class sigmoid and the final concat stay float; the head outputs and the DFL
#: are int8 — an int8 graph that ends at the DFL's distances, decoded on the CPU.
DECODE_ARITHMETIC = (r"head/(add|sub|div|mul|chunk|unsqueeze|transpose|cat/[4-9]|sigmoid|arange|meshgrid|stack"
                     r"|full|view/[3-9]).*")


@dataclass(frozen=True)
class QatScheme:
    """How a target quantizes: activation symmetry and which ops stay float."""

    target: str
    symmetric_activations: bool
    ignored: tuple[str, ...]
    outputs: tuple[str, ...] = ()  # ops whose output is quantized too (trainer.qat_outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "symmetric_activations": self.symmetric_activations,
                "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor "
                + ("symmetric" if self.symmetric_activations else "asymmetric"), "float_ops": list(self.ignored),
                "quantized_outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QatScheme:
        return cls(str(data["target"]), bool(data["symmetric_activations"]), tuple(data["float_ops"]),
                   tuple(data.get("quantized_outputs", ())))


def op_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """NNCF's names of the ops `model` runs on `example` (e.g. "head/2/conv2d/0")."""
    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(wrap_model(model), example)
    return [n.node_name for n in graph.get_all_nodes() if "/" in n.node_name]


def resolve_scheme(target: str, exclude: str | Sequence[str], names: Sequence[str]) -> QatScheme:
    """`exclude`: "auto" (the head's output layers and decode tail float; nothing for a full-integer target),
    "none", or a comma list of "decode" (the box arithmetic after the DFL) and NNCF op names / regular
    expressions; each must match an op."""
    if target not in SYMMETRIC_ACTIVATIONS:
        raise InputError(f"unknown QAT target '{target}' (known: {', '.join(TARGETS)})")
    if exclude == "auto":
        ignored = () if target in FULL_INTEGER else tuple(n for n in names if _is_head_output(n))
    elif exclude == "none":
        ignored = ()
    else:
        patterns = [DECODE_ARITHMETIC if p == "decode" else p for p in _split([exclude] if isinstance(exclude, str)
                                                                               else exclude)]
        for p in patterns:
            if not any(re.fullmatch(p, n) for n in names):
                raise InputError(f"--exclude {p} matches no op of the model (names look like "
                                 f"'{names[len(names) // 2]}')")
        ignored = tuple(n for n in names if any(re.fullmatch(p, n) for p in patterns))
    from trainer.qat_outputs import REQUANTIZED_TARGETS, output_points

    outputs = output_points(names, ignored) if target in REQUANTIZED_TARGETS else ()
    return QatScheme(target, SYMMETRIC_ACTIVATIONS[target], ignored, outputs)


def _split(items: Iterable[str]) -> list[str]:
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def _is_head_output(name: str) -> bool:
    return name.startswith("head/") and not _HEAD_QUANTIZED.match(name)


def insert_fake_quant(model: nn.Module, calib: Iterable[np.ndarray], scheme: QatScheme,
                      images: int) -> nn.Module:
    """`model` (eval mode) with NNCF quantizers whose ranges come from `images` calibration tensors (min/max).

    Weights: 8-bit per channel, full range (no "overflow fix" half range: every target here has int8 kernels
    that take it). Returns the wrapped model; its quantizer ranges are trainable."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    preset = nncf.QuantizationPreset.PERFORMANCE if scheme.symmetric_activations else nncf.QuantizationPreset.MIXED
    fake_quant_kernels()
    tensors = [np.ascontiguousarray(a) for a in calib]
    if not tensors:
        raise InputError("QAT needs at least one calibration image to set the quantizer ranges")
    params = AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE, disable_bias_correction=True)
    scope = nncf.IgnoredScope(names=list(scheme.ignored), validate=False)
    from converters.quiet import quiet_output

    _quiet_nncf()
    with quiet_output(), contextlib.redirect_stdout(io.StringIO()):  # NNCF's statistics progress bar
        quantized = nncf.quantize(model.eval(), nncf.Dataset([torch.from_numpy(t) for t in tensors]), preset=preset,
                                  subset_size=min(images, len(tensors)), ignored_scope=scope,
                                  advanced_parameters=params)
    if scheme.symmetric_activations:
        force_signed(quantized)
    if scheme.outputs:
        from trainer.qat_outputs import add_output_quantizers

        add_output_quantizers(quantized, scheme.outputs, tensors[:images])
    return quantized


def force_signed(model: nn.Module) -> int:
    """Make every unsigned activation quantizer signed (int8 with the same positive range: half the levels),
    as TensorRT's Q/DQ and ncnn have no uint8 activations; NNCF's hardware configs refuse to force it. Returns
    how many changed."""
    changed = 0
    for q in quantizers(model).values():
        if not q.per_channel and not q.signed:
            q.signed = True
            changed += 1
    return changed


def _quiet_nncf() -> None:
    logging.getLogger("nncf").setLevel(logging.ERROR)


def quantizers(model: nn.Module) -> dict[str, nn.Module]:
    """NNCF's quantizer modules in `model`, by their hook names."""
    from nncf.torch.quantization.layers import BaseQuantizer

    return {name: m for name, m in model.named_modules() if isinstance(m, BaseQuantizer)}


#: the hook of the DFL convolution's weight input (port 1) in NNCF's names
_DFL_WEIGHT = re.compile(r".*pre_hooks\.head/dfl/conv2d/\d+__1\.\d+$")


def _dfl_weight_quantizer(model: nn.Module) -> tuple[nn.Module, torch.Tensor] | None:
    """The quantizer of the DFL convolution's fixed weights and those weights (its bins), if the DFL is int8."""
    hook = next((q for name, q in quantizers(model).items() if _DFL_WEIGHT.match(name)), None)
    bins = getattr(getattr(getattr(model, "head", None), "dfl", None), "bins", None)
    return (hook, bins) if hook is not None and isinstance(bins, torch.Tensor) else None


def int8_dfl_bins(model: nn.Module) -> torch.Tensor | None:
    """The DFL's bin values 0..reg_max-1 as the int8 target computes them (fake-quantized on the weight grid,
    e.g. 1 -> 0.945 at scale 15/127), or None when the DFL stays float."""
    found = _dfl_weight_quantizer(model)
    if found is None:
        return None
    hook, bins = found
    with torch.no_grad():
        return hook(bins).detach().reshape(-1)


def exact_dfl_grid(model: nn.Module) -> bool:
    """Put the int8 DFL's weight grid where its bins 0..reg_max-1 are exact (step 1/8 for 16 bins, instead of
    max-abs 15/127) and stop it learning; False when the DFL is float."""
    found = _dfl_weight_quantizer(model)
    if found is None:
        return False
    hook, bins = found
    levels = int(hook.level_high)
    step = 1.0 / (levels // (bins.numel() - 1))
    with torch.no_grad():
        hook.scale.fill_(levels * step)  # NNCF's symmetric scale is the range: level_high steps
    for p in hook.parameters():
        p.requires_grad_(False)
    return True


def set_qdq_export(model: nn.Module) -> int:
    """Make every quantizer export as an ONNX QuantizeLinear/DequantizeLinear pair; returns how many."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    found = quantizers(model)
    for q in found.values():
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)  # type: ignore[operator]
    return len(found)


def freeze_quantizers(model: nn.Module) -> None:
    """Stop learning the quantizer ranges (the "freeze observers" step)."""
    for q in quantizers(model).values():
        for p in q.parameters():
            p.requires_grad_(False)


def freeze_bn(model: nn.Module) -> None:
    """BatchNorm layers use and keep their running statistics (eval mode) while the rest trains."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def is_quantizer_param(name: str) -> bool:
    """A parameter of an NNCF quantizer (its range), by its name in `named_parameters()`."""
    return "__nncf_hooks" in name


#: set to use NNCF's torch-native fake-quantization kernels, never its compiled ones (the tests do)
NATIVE_KERNELS_ENV = "EDGEBENCH_QAT_NATIVE_KERNELS"


def fake_quant_kernels() -> str:
    """Which fake-quantization kernels NNCF runs on the CPU: its C++ ones, compiled on first use (about a
    minute, then cached by torch), or its torch-native ones when asked (NATIVE_KERNELS_ENV), when no compiler
    works (NNCF falls back itself) or when the build does not finish within NNCF_EXTENSION_LOAD_TIMEOUT
    (default here 600 s; a stale lock left by a killed build waits forever)."""
    from nncf.torch.extensions import ExtensionLoaderTimeoutException
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    if os.environ.get(NATIVE_KERNELS_ENV):
        QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
        return "torch-native (asked)"
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    try:
        QuantizedFunctionsCPU.get("Quantize_forward")
    except ExtensionLoaderTimeoutException:
        QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
        return "torch-native (the compiled kernels did not load in time)"
    loaded = QuantizedFunctionsCPU._loaded_namespace
    return "torch-native (no compiler)" if loaded is ReferenceQuantizedFunctions else "compiled"
