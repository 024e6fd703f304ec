"""`--class-map`: score a data set whose classes differ from the model's through an explicit map.

The map is `MODEL=DATA` pairs (class names or indices, comma separated) or a YAML mapping file.
Each model class maps to one data set class; model classes not in the map are dropped from scoring
(their detections ignored); data set classes nobody maps to are scored with no detections (AP 0).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtimes.errors import InputError

__all__ = ["ClassMap", "check_class_map_options", "parse_class_map", "resolve_class_map"]

OPTION = "--class-map"


@dataclass(frozen=True)
class ClassMap:
    """A resolved class map: model class index -> data set class index, with both sides' names."""

    pairs: dict[int, int]
    model_names: dict[int, str]
    data_names: dict[int, str]

    @property
    def dropped(self) -> list[int]:
        """Model classes not in the map: their detections are not scored."""
        return sorted(k for k in self.model_names if k not in self.pairs)

    @property
    def unmapped(self) -> list[int]:
        """Data set classes no model class maps to: scored with no detections (AP 0)."""
        return sorted(k for k in self.data_names if k not in set(self.pairs.values()))

    def to_dict(self) -> dict[str, Any]:
        """The map as report settings record it: model class name -> data set class name."""
        return {
            "pairs": {self.model_names[m]: self.data_names[d] for m, d in sorted(self.pairs.items())},
            "dropped_model_classes": [self.model_names[k] for k in self.dropped],
            "unmapped_data_classes": [self.data_names[k] for k in self.unmapped],
        }

    def notes(self) -> list[str]:
        """The report notes: what the map does, which model classes are dropped, which data set
        classes score AP 0."""
        shown = ", ".join(f"{self.model_names[m]}={self.data_names[d]}" for m, d in sorted(self.pairs.items()))
        notes = [f"class map ({OPTION}): model classes scored as data set classes: {shown}"]
        if self.dropped:
            notes.append(f"class map ({OPTION}): model classes not in the map are not scored (their detections "
                         f"are ignored): {_listed(self.model_names, self.dropped)}")
        if self.unmapped:
            notes.append(f"class map ({OPTION}): data set classes no model class maps to are scored with no "
                         f"detections (AP 0): {_listed(self.data_names, self.unmapped)}")
        return notes

    def category_ids(self, data_category_ids: Mapping[int, int]) -> dict[int, int]:
        """Model class index -> the data set's COCO category id, for the mapped classes only."""
        return {m: int(data_category_ids[d]) for m, d in self.pairs.items()}

    def apply(self, detections: Iterable[dict[str, Any]], data_category_ids: Mapping[int, int]) -> list[dict[str, Any]]:
        """COCO detections whose category_id is a model class index, re-labelled with the data set's
        category ids; detections of dropped model classes are left out."""
        cats = self.category_ids(data_category_ids)
        return [{**d, "category_id": cats[int(d["category_id"])]} for d in detections
                if int(d["category_id"]) in cats]


def _listed(names: Mapping[int, str], keys: Iterable[int]) -> str:
    return ", ".join(names[k] for k in keys)


def check_class_map_options(class_map: str | None, allow_class_mismatch: bool) -> None:
    """InputError when both --class-map and --allow-class-mismatch are given, or the map is empty."""
    if class_map is None:
        return
    if allow_class_mismatch:
        raise InputError(f"{OPTION} and --allow-class-mismatch: pass one (the map scores by it, the flag by index)")
    parse_class_map(class_map)


def parse_class_map(spec: str) -> dict[str, str]:
    """The raw `MODEL -> DATA` pairs of `spec`: a YAML mapping file, or `A=B,C=D`. InputError when
    it is empty, malformed, or names a model class twice."""
    path = Path(spec)
    if "=" not in spec and path.suffix.lower() in (".yaml", ".yml", ".json"):
        return _from_file(path)
    pairs: dict[str, str] = {}
    for item in (p.strip() for p in spec.split(",")):
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise InputError(f"{OPTION} {spec!r}: '{item}' is not MODEL=DATA (class names or indices, comma "
                             "separated, or a YAML file)")
        _put(pairs, left.strip(), right.strip())
    return pairs


def _from_file(path: Path) -> dict[str, str]:
    """The pairs of a YAML mapping file (model class -> data set class)."""
    if not path.is_file():
        raise InputError(f"{OPTION}: file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{OPTION} {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise InputError(f"{OPTION} {path}: expected a non-empty mapping of model class to data set class")
    pairs: dict[str, str] = {}
    for left, right in loaded.items():
        _put(pairs, str(left).strip(), str(right).strip())
    return pairs


def _put(pairs: dict[str, str], left: str, right: str) -> None:
    if left in pairs:
        raise InputError(f"{OPTION}: model class '{left}' is mapped twice")
    pairs[left] = right


def resolve_class_map(raw: Mapping[str, str], model_names: Mapping[int, str],
                      data_names: Mapping[int, str]) -> ClassMap:
    """The map of `raw` pairs onto class indices: each token is a class name of its side, else its
    index. InputError naming the first token that is neither, or a model class mapped twice."""
    model = {int(k): str(v) for k, v in model_names.items()}
    data = {int(k): str(v) for k, v in data_names.items()}
    pairs: dict[int, int] = {}
    for left, right in raw.items():
        m = _index(left, model, "model")
        if m in pairs:
            raise InputError(f"{OPTION}: model class '{model[m]}' is mapped twice")
        pairs[m] = _index(right, data, "data set")
    return ClassMap(pairs, model, data)


def _index(token: str, names: Mapping[int, str], side: str) -> int:
    """The class index of `token` on one side: by name first, else as an index."""
    by_name = [k for k, v in names.items() if v == token]
    if by_name:
        return by_name[0]
    if token.lstrip("-").isdigit() and int(token) in names:
        return int(token)
    shown = ", ".join(f"{k}:{v}" for k, v in sorted(names.items())[:8]) + (", ..." if len(names) > 8 else "")
    raise InputError(f"{OPTION}: '{token}' is not a {side} class (name or index; {side} classes: {shown or 'none'})")
