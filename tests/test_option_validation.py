"""Every numeric option of every command has a rule: a bad value is one `error:` line naming the option,
exit code 2, and nothing written; the Python API (RunOptions, SweepOptions, export, predict) raises a
typed error for the same values."""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from bench.cli import COMMANDS, main
from bench.options import validate_run_options
from bench.sweep.run import RunOptions, prepare
from bench.sweep.sweep import SweepOptions, sweep
from runtimes.errors import InputError

COUNT = ("0", "-3")
NON_NEGATIVE = ("-1",)
CONF = ("-0.1", "1.5", "nan")
IOU = ("0", "1.5", "nan")
#: Durations and timeouts: finite and at most 7 days (1e12 / 1e300 overflowed a timer, inf / 1e308 hung).
SECONDS = ("-1", "nan", "inf", "1e308", "1e12", "604801")
POSITIVE_SECONDS = ("0", "-1", "nan", "inf", "1e300", "604801")
IMGSZ = ("0", "-32", "100", "8224", "1000000")  # a multiple of 32, at most 8192
THREADS = ("0", "-3", "1025", "99999")  # at most 1024 (99999 hung)
WARMUP = ("-1", "1000001")
ITERATIONS = ("0", "-3", "1000001")
PARITY_IMAGES = ("0", "-3", "1001")
SYNTH_IMAGES = ("-1", "1000001")
BUDGET = ("-5",)
FRACTION = ("-0.1", "2")
LIMIT = ("0", "-2", "1.5", "abc")
CALIB_IMAGES = ("0", "-3", "100001")

#: "command option" -> values that must be refused. Every numeric option found must be here.
BAD_VALUES: dict[str, tuple[str, ...]] = {
    "compare --max-p99-ms": BUDGET, "compare --max-map-drop": FRACTION,
    "compare --max-memory-mb": BUDGET, "compare --per-class-drop": FRACTION,
    "data synth --train": SYNTH_IMAGES, "data synth --val": SYNTH_IMAGES, "data synth --imgsz": IMGSZ,
    "data synth --seed": NON_NEGATIVE, "emulate --timeout": POSITIVE_SECONDS,
    "export --imgsz": IMGSZ, "export --opset": ("10", "-1"), "export --parity-images": PARITY_IMAGES,
    "export --threads": THREADS,
    "export --trt-workspace": ("0", "-1"), "export --trt-opt-level": ("-1", "6"), "export --trt-dla-core": ("-1",),
    "map --conf": CONF,
    "predict --conf": CONF, "predict --iou": IOU, "predict --max-det": COUNT, "predict --threads": THREADS,
    "predict --max-images": COUNT, "predict --max-frames": COUNT,
    "run --threads": THREADS, "run --warmup": WARMUP, "run --min-iterations": ITERATIONS,
    "run --min-duration": SECONDS, "run --max-images": COUNT, "run --max-eval-images": COUNT,
    "run --reference-conf": CONF, "run --timeout": POSITIVE_SECONDS, "run --duration": SECONDS,
    "run --window": POSITIVE_SECONDS,
    "sweep --imgsz": ("0", "320,100", "abc", ",", "320,8224"), "sweep --timeout": POSITIVE_SECONDS,
    "sweep --threads": THREADS, "sweep --warmup": WARMUP, "sweep --min-iterations": ITERATIONS,
    "sweep --min-duration": SECONDS, "sweep --max-images": COUNT, "sweep --max-eval-images": COUNT,
    "sweep --reference-conf": CONF,
    "train --imgsz": IMGSZ, "train --epochs": COUNT, "train --batch": COUNT, "train --workers": NON_NEGATIVE,
    "train --lr0": ("0", "-0.1", "inf", "nan"), "train --patience": NON_NEGATIVE, "train --close-mosaic": NON_NEGATIVE,
    "train --mosaic": CONF, "train --mixup": CONF, "train --seed": NON_NEGATIVE, "train --num-nodes": COUNT,
    "train --accumulate": COUNT, "train --max-steps": COUNT, "train --limit-train-batches": LIMIT,
    "train --limit-val-batches": LIMIT,
    "val --imgsz": IMGSZ, "val --batch": COUNT, "val --eval-conf": CONF, "val --iou": IOU,
    "val --max-det": COUNT, "val --conf": CONF, "val --deploy-conf": CONF, "val --max-images": COUNT,
    "run --calib-images": CALIB_IMAGES, "sweep --calib-images": CALIB_IMAGES, "export --calib-images": CALIB_IMAGES,
    "quantize --calib-images": CALIB_IMAGES, "quantize --max-images": COUNT, "quantize --max-map-drop": FRACTION,
    "quantize --max-added": COUNT, "quantize --threads": THREADS,
    "qat --epochs": COUNT, "qat --batch": COUNT, "qat --lr0": ("0", "-0.1", "inf", "nan"),
    "qat --freeze-bn-epoch": NON_NEGATIVE, "qat --freeze-quantizers-epoch": NON_NEGATIVE,
    "qat --calib-images": CALIB_IMAGES, "qat --workers": NON_NEGATIVE, "qat --seed": NON_NEGATIVE,
    "qat --limit-train-batches": LIMIT, "qat --limit-val-batches": LIMIT,
}

#: Arguments that make each command otherwise complete (so the bad value is the only fault).
REQUIRED = {
    "export": ["--model", "m.onnx", "-o", "m.xml"], "map": ["--gt", "gt.json", "--pred", "dt.json"],
    "predict": ["--model", "m.onnx", "--source", "img.jpg"], "sweep": ["--out", "sweep"],
    "train": ["--data", "data.yaml"], "val": ["--model", "m.onnx", "--data", "data.yaml"],
    "data synth": ["synth"], "quantize": ["--model", "m.onnx", "-o", "m.int8.onnx"],
}


def _walk(name: str, cmd: click.Command) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for sub, child in cmd.commands.items():
            yield from _walk(f"{name} {sub}", child)
    else:
        yield name, cmd


def _is_numeric(param: click.Parameter) -> bool:
    t = param.type
    return isinstance(t, (click.types.IntParamType, click.types.FloatParamType)) or getattr(t, "numeric", False)


def numeric_options() -> dict[str, click.Option]:
    """'command --option' -> option, for every int/float (or numeric list) option of every command."""
    found = {}
    for name, module in COMMANDS.items():
        command = importlib.import_module(f"bench.commands.{module}").command
        for path, cmd in _walk(name, command):
            for param in cmd.params:
                if isinstance(param, click.Option) and _is_numeric(param):
                    found[f"{path} {max(param.opts, key=len)}"] = param
    return found


def test_the_table_covers_every_numeric_option() -> None:
    found = set(numeric_options())
    assert found - set(BAD_VALUES) == set(), "numeric options without a rule in BAD_VALUES"
    assert set(BAD_VALUES) - found == set(), "BAD_VALUES names options that no longer exist"
    assert len(found) > 50


CASES = [(key, bad) for key, values in BAD_VALUES.items() for bad in values]


@pytest.mark.parametrize("key, bad", CASES, ids=[f"{k} {b}" for k, b in CASES])
def test_bad_value_is_one_line_exit_2_nothing_written(key: str, bad: str, tmp_path: Path, monkeypatch,
                                                      capfd) -> None:
    *path, option = key.split()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEBENCH_CACHE", str(tmp_path / ".cache"))
    with pytest.raises(SystemExit) as exc:
        main([*path, f"{option}={bad}", *REQUIRED.get(" ".join(path), [])])
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"'{option}'" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


# ----------------------------------------------------------------------------- the Python API

@pytest.mark.parametrize("field, value", [
    ("threads", 0), ("threads", -2), ("warmup", -1), ("min_iterations", -5), ("min_iterations", 0),
    ("min_duration_s", -1.0), ("max_eval_images", -3), ("max_eval_images", 0), ("timeout_s", 0.0),
    ("reference_conf", 1.5), ("duration_s", -1.0), ("window_s", 0.0), ("threads", 2.5), ("threads", True),
    ("duration_s", 1e12), ("timeout_s", 1e300), ("min_duration_s", float("inf")), ("min_duration_s", 1e308),
    ("min_duration_s", float("nan")), ("window_s", float("inf")), ("threads", 99999), ("warmup", 10**7),
    ("min_iterations", 10**7),
])
def test_run_options_out_of_range_is_a_typed_error(field: str, value: object, tmp_path: Path) -> None:
    opts = RunOptions(out_dir=str(tmp_path / "runs"), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=field):
        validate_run_options(opts)
    with pytest.raises(InputError, match=field):
        prepare(opts)  # the run's first step refuses it before loading anything
    assert not (tmp_path / "runs").exists()


def test_sweep_options_out_of_range_is_a_typed_error(tmp_path: Path) -> None:
    for bad in ({"min_iterations": -5}, {"imgsz": (320, 100)}, {"max_eval_images": -3}):
        with pytest.raises(InputError):
            sweep(SweepOptions(out_dir=str(tmp_path / "sweep"), **bad))  # type: ignore[arg-type]
    assert not (tmp_path / "sweep").exists()


def test_run_options_in_range_pass() -> None:
    validate_run_options(RunOptions(threads=1, warmup=0, min_iterations=1, min_duration_s=0.0, max_eval_images=1,
                                    timeout_s=0.5, reference_conf=0.0, duration_s=0.0, window_s=0.1))
    week = 7 * 24 * 3600.0  # the upper bounds themselves pass
    validate_run_options(RunOptions(warmup=10**6, min_iterations=10**6, min_duration_s=week, timeout_s=week,
                                    duration_s=week, window_s=week))


def test_api_errors_name_the_cli_option_too() -> None:
    with pytest.raises(InputError, match=r"min_duration_s \(--min-duration\) must be .* got nan"):
        validate_run_options(RunOptions(min_duration_s=float("nan")))


def test_imgsz_bounds_on_the_api() -> None:
    from bench.options import check_imgsz

    assert check_imgsz(8192) == 8192
    for bad in (8224, 10**6, 100, 0):
        with pytest.raises(InputError, match="multiple of 32, at most 8192"):
            check_imgsz(bad)


# ----------------------------------------------------------------------------- precisions

@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_precisions_is_an_error(value: str, tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["run"], ["sweep", "--out", "s"]):
        with pytest.raises(SystemExit) as exc:
            main([*command, f"--precisions={value}"])
        lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        assert exc.value.code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("error: ") and "--precisions is empty" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="--precisions is empty"):
        validate_run_options(RunOptions(precisions=()))


@pytest.mark.parametrize("module, command", [("run_cmd", ["run"]), ("sweep_cmd", ["sweep"])])
def test_cli_precisions_are_canonical_and_once(module: str, command: list[str], monkeypatch) -> None:
    cmd = importlib.import_module(f"bench.commands.{module}")
    seen: dict[str, object] = {}

    def fake(opts: object, **kwargs: object) -> None:
        seen["precisions"] = opts.precisions  # type: ignore[attr-defined]
        raise InputError("stop here")

    monkeypatch.setattr(cmd, command[0], fake)
    with pytest.raises(SystemExit):
        main([*command, "--precisions", "FP32, fp32,Int8,fp32"])
    assert seen["precisions"] == ("fp32", "int8")


def test_unknown_precision_is_one_line(capfd) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--precisions", "fp64"])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and "unknown precision 'fp64'" in lines[0], lines


def test_api_precisions_are_canonical_and_once() -> None:
    from bench.options import requested_precisions

    assert requested_precisions(("FP32", "fp32", " Int8 ")) == ("fp32", "int8")
    assert requested_precisions(None) is None


def test_run_measures_each_precision_once_by_its_canonical_name(tmp_path: Path, small_model: Path,
                                                                 small_data: Path) -> None:
    from bench.sweep.run import run

    opts = RunOptions(model=str(small_model), data=str(small_data), out_dir=str(tmp_path / "r"), warmup=0,
                      min_iterations=1, min_duration_s=0.0, duration_s=0, accuracy=False,
                      precisions=("FP32", "fp32"))
    report, _, _ = run(opts)
    assert [(r.precision, r.status) for r in report.results] == [("fp32", "ok")]


def test_export_and_predict_api_refuse_bad_counts(tmp_path: Path, small_model: Path) -> None:
    from bench.tasks.export import OnnxOptions, export_model
    from bench.tasks.predict import predict

    with pytest.raises(InputError, match="parity_images"):
        export_model(small_model, "openvino", tmp_path / "m.xml", parity_images=0)
    with pytest.raises(InputError, match="threads"):
        export_model(small_model, "openvino", tmp_path / "m.xml", threads=-2)
    with pytest.raises(InputError, match="multiple of 32"):
        export_model(small_model, "onnx", tmp_path / "m.onnx", onnx_options=OnnxOptions(imgsz=100))
    with pytest.raises(InputError, match="max_frames"):
        predict(small_model, tmp_path, max_frames=-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_threads_above_the_host_cores_warn_once(tmp_path: Path, monkeypatch, capfd) -> None:
    import bench.commands.predict_cmd as predict_cmd

    seen = {}

    def fake_predict(*args: object, **kwargs: object) -> list[object]:
        seen["threads"] = args[7]
        return []

    monkeypatch.setattr(predict_cmd, "predict", fake_predict)
    main(["predict", "--model", "m.onnx", "--source", "x.jpg", "--threads", "1024"])
    err = capfd.readouterr().err.strip().splitlines()
    assert seen["threads"] == 1024
    assert len(err) == 1 and err[0].startswith("warning: --threads 1024 exceeds"), err
    main(["predict", "--model", "m.onnx", "--source", "x.jpg", "--threads", "1"])
    assert capfd.readouterr().err == ""
