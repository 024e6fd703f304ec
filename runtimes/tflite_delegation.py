"""Which ops of a LiteRT interpreter the XNNPACK delegate took, rebuilt from the node list (no engine import).

After `allocate_tensors()` the interpreter's node list holds the model's own ops followed by one
"DELEGATE" node per delegate partition, whose inputs/outputs are the partition's boundary tensors.
The ops of a partition are found by walking back from its outputs through the producing ops until
the boundary inputs. Ops in no partition run on TFLite's built-in CPU kernels.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DELEGATE_OP = "DELEGATE"


@dataclass(frozen=True)
class Delegation:
    """XNNPACK delegation of one model: op counts, partitions, op types left on the CPU kernels."""

    total_ops: int
    delegated_ops: int
    partitions: int
    cpu_ops: dict[str, int] = field(default_factory=dict)  # op type -> count not delegated

    @property
    def fully_delegated(self) -> bool:
        return self.total_ops > 0 and self.delegated_ops == self.total_ops

    def summary(self) -> str:
        """One line, e.g. "XNNPACK 4/5 ops, 2 partitions; CPU kernels: RESIZE_NEAREST_NEIGHBOR x1"."""
        head = f"XNNPACK {self.delegated_ops}/{self.total_ops} ops, {self.partitions} partition(s)"
        if not self.cpu_ops:
            return head
        return head + "; CPU kernels: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.cpu_ops.items()))


def _ints(values: Iterable[Any]) -> list[int]:
    return [int(v) for v in values if int(v) >= 0]


def delegation_report(ops: list[dict[str, Any]]) -> Delegation:
    """Delegation from `Interpreter._get_ops_details()` taken after `allocate_tensors()`."""
    own = [op for op in ops if op["op_name"] != DELEGATE_OP]
    delegates = [op for op in ops if op["op_name"] == DELEGATE_OP]
    producer = {t: i for i, op in enumerate(own) for t in _ints(op["outputs"])}
    taken: set[int] = set()
    for node in delegates:
        taken |= _partition(own, producer, set(_ints(node["inputs"])), _ints(node["outputs"]))
    left = Counter(op["op_name"] for i, op in enumerate(own) if i not in taken)
    return Delegation(len(own), len(taken), len(delegates), dict(left))


def _partition(own: list[dict[str, Any]], producer: dict[int, int], boundary: set[int],
               outputs: list[int]) -> set[int]:
    """Indices of the ops between a partition's boundary inputs and its outputs."""
    found: set[int] = set()
    stack = list(outputs)
    while stack:
        tensor = stack.pop()
        op = producer.get(tensor)
        if tensor in boundary or op is None or op in found:
            continue
        found.add(op)
        stack.extend(_ints(own[op]["inputs"]))
    return found
