"""One CLI vocabulary: each old spelling still works for one version, with one `note:` line on stderr;
the old and the new spelling together are a usage error."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from runtimes.errors import InputError


class Stop(InputError):
    """Raised by the fakes once they have seen what the command passed on."""


def _capture(seen: dict[str, Any]) -> Any:
    def fake(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        raise Stop("stop")

    return fake


def _skip_val_input_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """val's class/size check opens the model and data first; these tests pass names that do not exist."""
    import bench.commands.val_cmd as val_cmd

    monkeypatch.setattr(val_cmd, "check_inputs", lambda *args: ([], None))


def _invoke(argv: list[str], capfd: pytest.CaptureFixture[str]) -> list[str]:
    """Run the CLI in process up to the faked library call; its stderr lines, less the fake's error."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert err[-1] == "error: stop", err
    return err[:-1]


def _note(old: str, new: str) -> list[str]:
    return [f"note: {old} is deprecated; use {new}"]


def test_run_max_eval_images(monkeypatch, capfd) -> None:
    import bench.commands.run_cmd as run_cmd

    seen: dict[str, Any] = {}
    monkeypatch.setattr(run_cmd, "run", _capture(seen))
    assert _invoke(["run", "--max-images", "7"], capfd) == []
    assert seen["args"][0].max_eval_images == 7
    assert _invoke(["run", "--max-eval-images", "5"], capfd) == _note("--max-eval-images", "--max-images")
    assert seen["args"][0].max_eval_images == 5


def test_sweep_backends_and_max_eval_images(monkeypatch, capfd) -> None:
    import bench.commands.sweep_cmd as sweep_cmd

    seen: dict[str, Any] = {}
    monkeypatch.setattr(sweep_cmd, "sweep", _capture(seen))
    assert _invoke(["sweep", "--out", "s", "--backend", "onnxruntime,openvino", "--imgsz", "320,416"], capfd) == []
    opts = seen["args"][0]
    assert opts.backends == ("onnxruntime", "openvino") and opts.imgsz == (320, 416)
    err = _invoke(["sweep", "--out", "s", "--backends", "openvino", "--max-eval-images", "3"], capfd)
    assert sorted(err) == sorted(_note("--backends", "--backend") + _note("--max-eval-images", "--max-images"))
    assert seen["args"][0].backends == ("openvino",) and seen["args"][0].max_eval_images == 3


def test_predict_positional_and_max_frames(monkeypatch, capfd) -> None:
    import bench.commands.predict_cmd as predict_cmd

    seen: dict[str, Any] = {}
    monkeypatch.setattr(predict_cmd, "predict", _capture(seen))
    assert _invoke(["predict", "-m", "m.onnx", "-s", "pics/", "--max-images", "4"], capfd) == []
    assert seen["args"][:2] == ("m.onnx", "pics/") and seen["args"][8] == 4
    err = _invoke(["predict", "m.onnx", "pics/", "--max-frames", "2"], capfd)
    assert sorted(err) == sorted(["note: predict MODEL SOURCE is deprecated; use predict --model MODEL --source "
                                  "SOURCE"] + _note("--max-frames", "--max-images"))
    assert seen["args"][:2] == ("m.onnx", "pics/") and seen["args"][8] == 2


def test_export_out(monkeypatch, capfd) -> None:
    import bench.tasks.export as export_task

    seen: dict[str, Any] = {}
    monkeypatch.setattr(export_task, "export_model", _capture(seen))
    assert _invoke(["export", "-m", "m.onnx", "--to", "openvino", "-o", "a.xml"], capfd) == []
    assert seen["args"][2] == "a.xml"
    assert _invoke(["export", "--model", "m.onnx", "--to", "openvino", "--out", "b.xml"], capfd) == \
        _note("--out", "--output")
    assert seen["args"][2] == "b.xml"


def test_val_conf_vocabulary(monkeypatch, capfd) -> None:
    import trainer.val

    seen: dict[str, Any] = {}
    monkeypatch.setattr(trainer.val, "validate", _capture(seen))
    _skip_val_input_checks(monkeypatch)
    assert _invoke(["val", "-m", "m.onnx", "-d", "d.yaml", "--eval-conf", "0.01", "--max-images", "9"], capfd) == []
    args, kwargs = seen["args"], seen["kwargs"]
    assert args[5] == 0.01 and args[8] == 0.25 and kwargs["limit"] == 9  # mAP floor, deployment conf
    assert _invoke(["val", "-m", "m.onnx", "-d", "d.yaml", "--deploy-conf", "0.4"], capfd) == \
        _note("--deploy-conf", "--conf")
    assert seen["args"][8] == 0.4 and seen["args"][5] == 0.001
    err = _invoke(["val", "-m", "m.onnx", "-d", "d.yaml", "--conf", "0.5"], capfd)
    assert len(err) == 1 and "val --conf is now the deployment threshold" in err[0]
    assert seen["args"][8] == 0.5


def test_train_model_is_arch(monkeypatch, capfd) -> None:
    pytest.importorskip("lightning")
    import trainer.train

    seen: dict[str, Any] = {}
    monkeypatch.setattr(trainer.train, "fit", _capture(seen))
    assert _invoke(["train", "-d", "d.yaml", "--arch", "s"], capfd) == []
    assert seen["args"][0].model == "s" and seen["args"][0].max_steps == -1
    assert _invoke(["train", "--data", "d.yaml", "--model", "m"], capfd) == _note("--model", "--arch")
    assert seen["args"][0].model == "m"


@pytest.mark.parametrize("argv, needle", [
    (["run", "--max-images", "2", "--max-eval-images", "3"], "give only --max-images"),
    (["sweep", "--out", "s", "--backend", "onnxruntime", "--backends", "openvino"], "give only --backend"),
    (["predict", "m.onnx", "x.jpg", "--model", "n.onnx"], "--model M --source S"),
    (["predict", "--model", "m.onnx"], "missing --source"),
    (["export", "--model", "m.onnx", "--to", "openvino"], "missing -o/--output"),
])
def test_old_and_new_together_or_missing_is_a_usage_error(argv: list[str], needle: str, tmp_path: Path,
                                                          monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_backend_is_a_list_on_run_and_sweep_and_one_name_on_predict_and_val(monkeypatch, capfd) -> None:
    import bench.commands.predict_cmd as predict_cmd
    import bench.commands.run_cmd as run_cmd
    import bench.commands.sweep_cmd as sweep_cmd
    import trainer.val

    seen: dict[str, Any] = {}
    _skip_val_input_checks(monkeypatch)
    for module, name in ((run_cmd, "run"), (sweep_cmd, "sweep"), (predict_cmd, "predict"), (trainer.val, "validate")):
        monkeypatch.setattr(module, name, _capture(seen))
    for command in ("run", "sweep"):
        assert _invoke([command, "--backend", "onnxruntime, openvino"], capfd) == []
        assert seen["args"][0].backends == ("onnxruntime", "openvino")
        assert _invoke([command, "--backend", "ncnn"], capfd) == [] and seen["args"][0].backends == ("ncnn",)
        assert _invoke([command], capfd) == [] and seen["args"][0].backends is None
        assert _invoke([command, "--backend", "openvino,openvino,"], capfd) == []
        assert seen["args"][0].backends == ("openvino",)
    assert _invoke(["predict", "-m", "m.onnx", "-s", "x.jpg", "--backend", "openvino"], capfd) == []
    assert seen["args"][3] == "openvino"
    assert _invoke(["val", "-m", "m.xml", "-d", "d.yaml", "--backend", "openvino"], capfd) == []
    assert seen["args"][9] == "openvino"


@pytest.mark.parametrize("argv, needle", [
    (["predict", "-m", "m.onnx", "-s", "x.jpg", "--backend", "onnxruntime,openvino"],
     "takes one backend, got 'onnxruntime,openvino' (run and sweep take a comma list)"),
    (["val", "-m", "m.onnx", "-d", "d.yaml", "--backend", "openvino,ncnn"], "takes one backend"),
    (["predict", "-m", "m.onnx", "-s", "x.jpg", "--backend", "tensorflo"], "unknown backend 'tensorflo' (known: "),
    (["val", "-m", "m.onnx", "-d", "d.yaml", "--backend", "nope"], "unknown backend 'nope'"),
    (["run", "--backend", "onnxruntime,tensorflo"], "unknown backend 'tensorflo'"),
    (["sweep", "--backends", "nope"], "unknown backend 'nope'"),
    (["run", "--backend", " , "], "expected a backend name"),
])
def test_bad_backend_is_one_line_before_anything_runs(argv: list[str], needle: str, tmp_path: Path,
                                                     monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []
