"""One of our checkpoints from an ONNX our trainer exported (e.g. the bundled model, which ships as ONNX only):
each Conv's BN-fused weight and bias go back to the module the node's name comes from; the BN after it becomes
identity plus that bias. Lets checkpoint-only tools (the torch backend, QAT) start from such an ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edge_sdk.meta import ModelMeta
from runtimes.errors import ModelLoadError
from trainer.checkpoint import CKPT_KEY, checkpoint_info
from trainer.model import YoloDetector, build_model


def module_name(node_name: str) -> str:
    """'/backbone/stage2/stage2.1/m.0/cv1/conv/Conv' -> 'backbone.stage2.1.m.0.cv1.conv' (the legacy exporter's
    scopes repeat the parent's name before a child's index)."""
    parts, prev = [], ""
    for comp in node_name.strip("/").split("/")[:-1]:
        parts.append(comp[len(prev) + 1:] if prev and comp.startswith(prev + ".") else comp)
        prev = comp
    return ".".join(parts)


def lift_checkpoint(onnx_path: str | Path, out: str | Path) -> Path:
    """Write the checkpoint holding `onnx_path`'s weights to `out`; ModelLoadError for an ONNX our trainer did
    not export (no model config in its metadata, or convolutions that do not map onto the rebuilt model)."""
    proto = onnx.load(str(onnx_path))
    meta = ModelMeta.from_props({p.key: p.value for p in proto.metadata_props})
    cfg = meta.extra.get("model")
    if not isinstance(cfg, dict) or meta.extra.get("producer") != "edgebench.trainer":
        raise ModelLoadError(f"{onnx_path} was not exported by edgebench's trainer (no model config in its "
                             f"metadata): pass one of our checkpoints (.ckpt)")
    model = build_model(cfg["scale"], cfg["nc"], cfg["act"], cfg["reg_max"]).eval()
    _copy_convs(proto, model, str(onnx_path))
    state = {f"ema.module.{k}": v for k, v in model.state_dict().items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({CKPT_KEY: checkpoint_info(model.config, meta.names, (meta.imgsz or (320, 320))[0]),
                "state_dict": state}, str(out))
    return Path(out)


def _copy_convs(proto: onnx.ModelProto, model: YoloDetector, label: str) -> None:
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    casts = {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "Cast"}  # fp16-stored weights

    def value(name: str) -> torch.Tensor:
        return torch.from_numpy(inits[casts.get(name, name)].astype(np.float32))

    modules = dict(model.named_modules())
    owner = {id(m.conv): m for m in modules.values() if hasattr(m, "conv") and hasattr(m, "bn")}
    lifted = 0
    with torch.no_grad():
        for node in (n for n in proto.graph.node if n.op_type == "Conv"):
            conv = modules.get(module_name(node.name))
            if not isinstance(conv, torch.nn.Conv2d):
                continue  # the DFL's fixed convolution
            conv.weight.copy_(value(node.input[1]))
            if conv.bias is not None:
                conv.bias.copy_(value(node.input[2]))
            else:
                bn = owner[id(conv)].bn
                bn.weight.fill_(1.0)
                bn.bias.copy_(value(node.input[2]))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            lifted += 1
    if lifted != sum(isinstance(m, torch.nn.Conv2d) for m in modules.values()):
        raise ModelLoadError(f"{label}: its convolutions do not map onto the rebuilt model ({lifted} of them did)")
