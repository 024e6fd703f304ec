"""`--class-map` (issue 10): a data set whose classes differ from the model's is scored through an explicit
map; without one it is an error before anything runs."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from bench.sweep.class_map import parse_class_map, resolve_class_map
from bench.sweep.defaults import default_data, default_model
from bench.sweep.run import RunOptions, prepare, run
from edge_sdk.detector import Detector
from runtimes.errors import InputError
from tests.conftest import NAMES, assert_one_line_error, run_cli, write_yolo_set

SWAPPED = {0: "class1", 1: "class0", 2: "class2", 3: "class3"}
BY_NAME = ",".join(f"{n}={n}" for n in NAMES.values())


def _opts(tmp_path: Path, model: Path, data: Path, out: str, **kw: object) -> RunOptions:
    return RunOptions(model=str(model), data=str(data), out_dir=str(tmp_path / out), precisions=("fp32",),
                      warmup=0, min_iterations=2, min_duration_s=0.0, duration_s=0, **kw)  # type: ignore[arg-type]


def _bundled_names() -> dict[int, str]:
    with Detector(default_model()) as det:
        return dict(det.meta.names or {})


def _subset(src: Path, dst: Path, names: dict[int, str], relabel: dict[int, int], n: int = 24) -> Path:
    """The first n val images of the YOLO set at `src` (its data.yaml's folder), class indices re-labelled
    through `relabel`, as a data set with class names `names`; returns its data.yaml."""
    (dst / "images" / "val").mkdir(parents=True)
    (dst / "labels" / "val").mkdir(parents=True)
    for image in sorted((src / "images" / "val").glob("*.jpg"))[:n]:
        shutil.copy(image, dst / "images" / "val" / image.name)
        lines = (src / "labels" / "val" / f"{image.stem}.txt").read_text().splitlines()
        fixed = [f"{relabel.get(int(c), int(c))} {rest}" for c, _, rest in (ln.partition(" ") for ln in lines if ln)]
        (dst / "labels" / "val" / f"{image.stem}.txt").write_text("\n".join(fixed) + "\n")
    (dst / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": names}))
    return dst / "data.yaml"


@pytest.fixture(scope="module")
def bundled_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, str]]:
    """(the bundled model's data, the same images and boxes with classes 0 and 1 swapped in both the
    labels and the names, the model's names)."""
    names = _bundled_names()
    src = default_data({"names": names}).parent
    root = tmp_path_factory.mktemp("bundled")
    same = _subset(src, root / "same", names, {})
    swapped_names = {**names, 0: names[1], 1: names[0]}
    swapped = _subset(src, root / "swapped", swapped_names, {0: 1, 1: 0})
    return same, swapped, names


# --- parsing and resolving ---------------------------------------------------------------------

def test_a_map_resolves_by_name_or_index_onto_each_side():
    model, data = {0: "a", 1: "b"}, {0: "b", 1: "a"}
    by_name = resolve_class_map(parse_class_map("a=a, b=b"), model, data)
    assert by_name.pairs == {0: 1, 1: 0} and not by_name.dropped and not by_name.unmapped
    by_index = resolve_class_map(parse_class_map("0=1,1=0"), model, data)
    assert by_index.pairs == by_name.pairs
    partial = resolve_class_map(parse_class_map("a=a"), model, {0: "b", 1: "a", 2: "c"})
    assert partial.dropped == [1] and partial.unmapped == [0, 2]
    assert partial.to_dict() == {"pairs": {"a": "a"}, "dropped_model_classes": ["b"],
                                 "unmapped_data_classes": ["b", "c"]}
    notes = partial.notes()
    assert "model classes not in the map are not scored" in notes[1] and notes[1].endswith(": b")
    assert "(AP 0): b, c" in notes[2]


def test_a_map_file_is_read(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("a: b\n1: 0\n")
    assert parse_class_map(str(path)) == {"a": "b", "1": "0"}
    with pytest.raises(InputError, match="file not found"):
        parse_class_map(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(InputError, match="expected a non-empty mapping"):
        parse_class_map(str(tmp_path / "list.yaml"))


@pytest.mark.parametrize(("spec", "needle"), [
    ("a", "'a' is not MODEL=DATA"), ("a=", "'a=' is not MODEL=DATA"), ("a=a,a=b", "'a' is mapped twice"),
    ("a=a,0=b", "'a' is mapped twice"), ("x=a", "'x' is not a model class"),
    ("a=zz", "'zz' is not a data set class"), ("7=a", "'7' is not a model class"),
])
def test_a_bad_map_names_the_bad_token(spec, needle):
    with pytest.raises(InputError, match=needle):
        resolve_class_map(parse_class_map(spec), {0: "a", 1: "b"}, {0: "b", 1: "a"})


# --- run / sweep / val -------------------------------------------------------------------------

def test_cli_refuses_a_mismatch_without_a_map_and_a_bad_name_in_one(tmp_path, small_model):
    swapped = write_yolo_set(tmp_path / "swapped", names=SWAPPED)
    for cmd in ("run", "sweep"):
        proc = run_cli(cmd, "--model", str(small_model), "--data", str(swapped), "--out", str(tmp_path / cmd),
                       cwd=tmp_path)
        assert_one_line_error(proc, "the class names differ", "--allow-class-mismatch")
        proc = run_cli(cmd, "--model", str(small_model), "--data", str(swapped), "--out", str(tmp_path / cmd),
                       "--class-map", "class0=class0,nope=class1", cwd=tmp_path)
        assert_one_line_error(proc, "--class-map", "'nope' is not a model class")
        assert not (tmp_path / cmd).exists()
    proc = run_cli("val", "-m", str(small_model), "-d", str(swapped), "--class-map", "class0=nope", cwd=tmp_path)
    assert_one_line_error(proc, "'nope' is not a data set class", "0:class1, 1:class0")
    proc = run_cli("run", "--model", str(small_model), "--data", str(swapped), "--out", str(tmp_path / "both"),
                   "--class-map", BY_NAME, "--allow-class-mismatch", cwd=tmp_path)
    assert_one_line_error(proc, "--class-map and --allow-class-mismatch")
    assert not (tmp_path / "both").exists()


def test_a_map_passes_the_mismatch_check_and_needs_labels(tmp_path, small_model):
    swapped = write_yolo_set(tmp_path / "swapped", names=SWAPPED)
    ctx = prepare(_opts(tmp_path, small_model, swapped, "r", class_map=BY_NAME))
    assert ctx.class_map is not None and ctx.class_map.pairs == {0: 1, 1: 0, 2: 2, 3: 3}
    assert any(n.startswith("class map (--class-map)") for n in ctx.notes)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    shutil.copy(next((tmp_path / "swapped" / "images" / "val").glob("*.jpg")), unlabelled / "0.jpg")
    with pytest.raises(InputError, match="has no labels to map"):
        prepare(_opts(tmp_path, small_model, unlabelled, "u", class_map=BY_NAME))


def test_run_scores_through_the_map_as_on_the_matching_data_set(tmp_path, bundled_sets):
    same, swapped, names = bundled_sets
    model = default_model()
    by_name = ",".join(f"{n}={n}" for n in names.values())
    ref, _, _ = run(_opts(tmp_path, model, same, "same"))
    got, json_path, md_path = run(_opts(tmp_path, model, swapped, "mapped", class_map=by_name))
    by_index, _, _ = run(_opts(tmp_path, model, swapped, "index", allow_class_mismatch=True))
    ref_acc, got_acc = ref.results[0].accuracy, got.results[0].accuracy
    assert ref_acc is not None and got_acc is not None and by_index.results[0].accuracy is not None
    assert ref_acc.AP > 0.1  # a real score, so equality means something
    assert got_acc.AP == pytest.approx(ref_acc.AP, abs=1e-9)
    assert got_acc.per_class_ap == pytest.approx(ref_acc.per_class_ap, abs=1e-9)
    assert by_index.results[0].accuracy.AP < ref_acc.AP - 0.01  # the map is what fixed it
    settings = json.loads(json_path.read_text())["settings"]
    assert settings["class_map"]["pairs"] == {n: n for n in names.values()}
    assert "class map (--class-map): model classes scored as data set classes" in md_path.read_text()


def test_unmapped_classes_are_dropped_and_noted(tmp_path, bundled_sets):
    same, _, names = bundled_sets
    dropped = names[0]
    partial = ",".join(f"{n}={n}" for k, n in names.items() if k != 0)
    report, json_path, md_path = run(_opts(tmp_path, default_model(), same, "partial", class_map=partial))
    settings = json.loads(json_path.read_text())["settings"]["class_map"]
    assert settings["dropped_model_classes"] == [dropped] and settings["unmapped_data_classes"] == [dropped]
    accuracy = report.results[0].accuracy
    assert accuracy is not None and accuracy.per_class_ap[dropped] == 0.0
    assert accuracy.per_class_ap[names[1]] > 0
    text = md_path.read_text()
    assert f"are not scored (their detections are ignored): {dropped}" in text
    assert f"scored with no detections (AP 0): {dropped}" in text


def test_sweep_records_the_map(tmp_path, bundled_sets):
    from bench.sweep.sweep import SweepOptions, sweep

    _, swapped, names = bundled_sets
    by_name = ",".join(f"{n}={n}" for n in names.values())
    opts = SweepOptions(**{f.name: getattr(_opts(tmp_path, default_model(), swapped, "sweep", class_map=by_name),
                                           f.name) for f in dataclasses.fields(RunOptions)})
    report, json_path, _ = sweep(opts)
    assert report.results[0].accuracy is not None and report.results[0].accuracy.AP > 0.1
    assert json.loads(json_path.read_text())["settings"]["class_map"]["pairs"][names[0]] == names[0]


def test_val_scores_through_the_map_as_on_the_matching_data_set(bundled_sets, capfd):
    from bench.cli import main

    same, swapped, names = bundled_sets
    model = str(default_model())
    main(["val", "-m", model, "-d", str(same), "--json"])
    ref = json.loads(capfd.readouterr().out)
    with pytest.raises(SystemExit) as exc:
        main(["val", "-m", model, "-d", str(swapped)])
    assert exc.value.code == 2
    capfd.readouterr()
    main(["val", "-m", model, "-d", str(swapped), "--class-map", ",".join(f"{n}={n}" for n in names.values()),
          "--json"])
    captured = capfd.readouterr()
    got = json.loads(captured.out)
    assert ref["stats"]["AP"] > 0.1 and got["stats"]["AP"] == pytest.approx(ref["stats"]["AP"], abs=1e-9)
    assert "note: class map (--class-map)" in captured.err
