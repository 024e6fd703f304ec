"""edgebench emulate: argument forwarding, the chroot command, host checks, venv steps and the emulated marking
(fast, anywhere); the real arm64 run under qemu only with EDGEBENCH_ARM64=1 (`make test-arm64`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.emulate import host
from bench.emulate.chroot import chroot_argv, inside, inside_env
from bench.emulate.cpuinfo import cpuinfo_text
from bench.emulate.errors import EmulationError
from bench.emulate.forward import (
    TIMING_DEFAULTS,
    add_binds,
    calib_note,
    data_binds,
    forward,
    share_default_calibration,
    split_run_args,
)
from bench.emulate.marking import mark_emulated, relocate
from bench.emulate.rootfs import mounted_under, spec_for
from bench.emulate.venv import pip_commands, wheel_digest
from bench.report.compare import CompareOptions, compare
from bench.report.compare_render import render_compare_markdown
from bench.report.markdown import render_markdown
from bench.report.rows import EMULATED, NOT_MEASURABLE, Report
from bench.report.writer import new_report, new_result, validate_report
from runtimes.errors import InputError
from tests.test_budgets import row

ARM64_ENV = "EDGEBENCH_ARM64"
SKIP_REASON = f"the emulated arm64 run takes minutes and needs root: set {ARM64_ENV}=1 (make test-arm64)"


def test_forward_makes_paths_absolute_binds_their_folders_and_redirects_out(tmp_path, monkeypatch):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "data.yaml").write_text("names: [a]\n")
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    fwd = forward(["run", "-p", "rpi5", "--model", "m/model.onnx", f"--data={data / 'data.yaml'}",
                   "--out", "host-out", "--overwrite", "--no-accuracy", "--warmup", "0"], "/edgebench-runs/x")
    args = fwd.args
    assert args[:3] == ["run", "--profile", "rpi5"]
    assert args[args.index("--model") + 1] == str(model.resolve())
    assert args[args.index("--data") + 1] == str((data / "data.yaml").resolve())
    assert fwd.binds == [model.parent.resolve(), data.resolve()]
    assert (fwd.out, fwd.overwrite, fwd.profile) == ("host-out", True, "rpi5")
    assert args[-2:] == ["--out", "/edgebench-runs/x"] and "--overwrite" not in args and "--no-accuracy" in args
    assert args[args.index("--warmup") + 1] == "0" and args.count("--warmup") == 1  # given: kept
    for opt, value in TIMING_DEFAULTS[1:]:
        assert args[args.index(opt) + 1] == value


def test_forward_keeps_a_split_suffix_and_builtin_names(tmp_path):
    (tmp_path / "data.yaml").write_text("x: 1\n")
    fwd = forward(["run", "--profile", "rpi5", "--calib", f"{tmp_path / 'data.yaml'}:train"], "/o")
    assert fwd.args[fwd.args.index("--calib") + 1] == f"{tmp_path.resolve() / 'data.yaml'}:train"
    assert fwd.binds == [tmp_path.resolve()]
    assert forward(["run", "--profile", "rpi5"], "/o").binds == []  # a built-in profile name binds nothing


@pytest.mark.parametrize(("args", "needle"), [
    (["sweep", "--profile", "rpi5"], "runs `run` under emulation"),
    ([], "got: nothing"),
    (["run", "--model", "m.onnx"], "needs run's --profile"),
    (["run", "--profile", "rpi5", "--bogus", "1"], "no option '--bogus'"),
    (["run", "--profile"], "--profile needs a value"),
])
def test_forward_refuses_what_run_would_not_take(args, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        forward(args, "/o")


def test_int8_without_calib_gets_a_note():
    assert "--calib" in calib_note(forward(["run", "-p", "rpi5"], "/o"))  # the profile's precisions may hold int8
    assert "--calib" in calib_note(forward(["run", "-p", "rpi5", "--precisions", "fp32,INT8"], "/o"))
    assert calib_note(forward(["run", "-p", "rpi5", "--precisions", "fp32"], "/o")) is None
    assert calib_note(forward(["run", "-p", "rpi5", "--calib", "/nonexistent:train"], "/o")) is None


def test_forward_binds_what_a_data_yaml_points_at_outside_its_folder(tmp_path):
    cfg, ds, other, listed = (tmp_path / n for n in ("cfg", "ds", "other", "listed"))
    for folder in (cfg, ds / "images" / "val", ds / "labels" / "val", other / "images" / "train",
                   listed / "images" / "a"):
        folder.mkdir(parents=True)
    (listed / "images" / "a" / "x.jpg").write_bytes(b"x")
    (cfg / "test.txt").write_text(f"{listed / 'images' / 'a' / 'x.jpg'}\n\n")
    (cfg / "data.yaml").write_text(f"path: ../ds\nval: images/val\ntrain: [{other / 'images' / 'train'}]\n"
                                   f"test: {cfg / 'test.txt'}\nnames: [a]\n")
    fwd = forward(["run", "-p", "rpi5", "--data", str(cfg / "data.yaml"), "--calib",
                   f"{cfg / 'data.yaml'}:train"], "/o")
    assert fwd.binds == [cfg.resolve(), ds.resolve(), other.resolve(), listed.resolve()]  # each once
    assert data_binds(str(cfg / "nothing.yaml")) == []
    (tmp_path / "bad.yaml").write_text("{")
    assert data_binds(str(tmp_path / "bad.yaml")) == [tmp_path.resolve()]  # run inside says what is wrong


def test_add_binds_keeps_only_the_outermost_folders(tmp_path):
    binds = [tmp_path / "a" / "b", tmp_path / "c"]
    add_binds(binds, [tmp_path / "a" / "b" / "d", tmp_path / "a", tmp_path / "c"])
    assert binds == [tmp_path / "c", tmp_path / "a"]


def test_int8_of_the_bundled_model_shares_the_hosts_calibration_set(tmp_path, monkeypatch):
    import bench.sweep.defaults as defaults

    calib = tmp_path / "synth-train" / "data.yaml"
    calib.parent.mkdir()
    calib.write_text("train: .\nnames: [a]\n")
    made = []
    monkeypatch.setattr(defaults, "default_calibration", lambda meta=None: made.append(meta) or calib)
    fwd = forward(["run", "-p", "rpi5", "--precisions", "fp32,int8"], "/o")
    assert share_default_calibration(fwd) == calib
    assert fwd.args[-4:] == ["--calib", f"{calib.resolve()}:train", "--out", "/o"]
    assert fwd.binds == [calib.parent.resolve()] and calib_note(fwd) is None and made[0]["imgsz"]
    bundled = str(defaults.default_model())
    assert share_default_calibration(forward(["run", "-p", "rpi5", "--model", bundled], "/o")) == calib
    other = tmp_path / "other.onnx"
    other.write_bytes(b"x")
    for args in (["--model", str(other)], ["--calib", str(calib)], ["--precisions", "fp32"]):
        assert share_default_calibration(forward(["run", "-p", "rpi5", *args], "/o")) is None


def test_detect_job_writes_detections_raw_outputs_and_errors(tmp_path, small_model):
    import numpy as np

    from bench.emulate.detect import main as detect_main
    from tests.conftest import write_yolo_set

    data = write_yolo_set(tmp_path / "ds", n=3, model=small_model)
    job = {"data": str(data), "limit": 2, "out": str(tmp_path / "out"),
           "configs": [{"name": "ort", "artifact": str(small_model), "backend": "onnxruntime", "precision": "fp32"},
                       {"name": "bad", "artifact": str(small_model), "backend": "ncnn", "precision": "fp32"}]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert detect_main([str(tmp_path / "job.json")]) == 0
    ort = json.loads((tmp_path / "out" / "ort.json").read_text())
    assert ort["precision_used"] == "fp32" and len({d["image_id"] for d in ort["detections"]}) <= 2
    assert ort["detections"] and np.load(tmp_path / "out" / "ort.npz")["out0"].shape[1] == 4 + 4
    assert "ncnn reads a .param" in json.loads((tmp_path / "out" / "bad.json").read_text())["error"]
    assert not (tmp_path / "out" / "bad.npz").exists()


def test_parity_script_splits_boxes_from_scores_and_scores_agreement(tmp_path):
    from tests.test_benchmarks_smoke import load_script

    script = load_script("arm64_parity.py")
    a = np.zeros((1, 6, 5))
    b = a.copy()
    b[0, 1, 2], b[0, 5, 0] = 2.5, 0.01
    assert script.split_diff(a, b, nc=2) == (2.5, 0.01)
    assert script.split_diff(a.transpose(0, 2, 1), b.transpose(0, 2, 1), nc=2) == (2.5, 0.01)
    assert script.split_diff(a, b[:, :, :4], nc=2) == (float("inf"), float("inf"))
    c = script.Config("ncnn", "fp16")
    c.side["x86"].update(status="skipped")
    c.side["arm64"].update(ap=0.6, precision_used="fp16", agreement=0.9, reference="ncnn-fp32", raw=(2.8, 9e-4))
    assert script.row(c) == "| ncnn fp16 | skipped | 0.6000 | 0.9000* | 2.8* | 0.0009* | - / fp16 |"


def test_split_knows_runs_flags_from_its_valued_options():
    pairs = split_run_args(["run", "--strict-labels", "--max-images", "5", "-p", "rpi5"])
    assert pairs == [("--strict-labels", None), ("--max-images", "5"), ("--profile", "rpi5")]


def test_chroot_command_has_a_clean_environment_and_the_qemu_cpu(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    env = inside_env("cortex-a76", "/etc/ssl/certs/edgebench-host-ca.crt")
    argv = chroot_argv(Path("/r"), env, ["/opt/edgebench-venv/bin/edgebench", "run"])
    assert argv[:2] == ["env", "-i"] and argv[-4:] == ["chroot", "/r", "/opt/edgebench-venv/bin/edgebench", "run"]
    assert "QEMU_CPU=cortex-a76" in argv and "PIP_CERT=/etc/ssl/certs/edgebench-host-ca.crt" in argv
    assert not any(a.startswith("PIP_FIND_LINKS") for a in argv)
    assert inside(Path("/r"), Path("/tmp")) == Path("/r") / Path("/tmp").resolve().relative_to("/")


def test_cpuinfo_is_an_arm_core_and_unknown_cpus_are_refused():
    text = cpuinfo_text("cortex-a76", cores=3)
    assert text.count("processor\t:") == 3 and "CPU part\t: 0xd0b" in text and "asimdhp" in text
    assert "fphp" not in cpuinfo_text("cortex-a72", cores=1)
    with pytest.raises(EmulationError, match="--cpu max is not supported"):
        cpuinfo_text("max")


def test_not_root_is_one_line_and_exit_2(monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exc:
        main(["emulate", "--arch", "arm64", "--", "run", "--profile", "rpi5"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: edgebench emulate needs root")


def _completed(code: int, out: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, out)


def test_binfmt_that_cannot_be_mounted_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(host, "BINFMT_DIR", tmp_path / "binfmt_misc")
    monkeypatch.setattr(host, "_run", lambda cmd, **kw: _completed(32, "mount: permission denied"))
    with pytest.raises(EmulationError, match="binfmt_misc cannot be mounted .*permission denied"):
        host.ensure_binfmt("arm64")


def test_packages_that_cannot_be_installed_are_one_clear_error(monkeypatch):
    monkeypatch.setattr(host, "missing_packages", lambda packages=host.PACKAGES: ["mmdebstrap"])
    monkeypatch.setattr(host.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(host, "_run", lambda cmd, **kw: _completed(100, "E: Unable to locate package mmdebstrap"))
    with pytest.raises(EmulationError, match="mmdebstrap cannot be installed: apt-get exit 100: E: Unable"):
        host.ensure_packages()
    with pytest.raises(EmulationError, match="--arch riscv64 is not supported"):
        host.arch_names("riscv64")


def test_rootfs_key_and_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEBENCH_CACHE", str(tmp_path))
    spec = spec_for("arm64", "7.2.22")
    assert spec.key == "arm64-bookworm-qemu7.2.22"
    assert spec.root == tmp_path / "emulate" / "arm64-bookworm-qemu7.2.22" / "rootfs"
    mounts = tmp_path / "mounts"
    mounts.write_text(f"proc {spec.root}/proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n")
    assert mounted_under(spec.root, str(mounts)) == [f"{spec.root}/proc"]


def test_pip_steps_pin_the_engines_and_reinstall_the_wheel_last():
    steps = pip_commands("/w/edgebench-0.1.0-py3-none-any.whl", {"numpy": "2.4.6", "pnnx": "20261020"})
    assert steps[0][-2:] == ["/w/edgebench-0.1.0-py3-none-any.whl[ncnn,tflite]", "numpy==2.4.6"]
    assert steps[1][-2:] == ["--no-deps", "pnnx==20261020"]
    assert steps[2][-3:] == ["--no-deps", "--force-reinstall", "/w/edgebench-0.1.0-py3-none-any.whl"]
    assert pip_commands("/w/e.whl", {}, deps_current=True) == [steps[2][:-1] + ["/w/e.whl"]]


def test_wheel_digest_ignores_zip_timestamps_and_record(tmp_path):
    import zipfile

    def wheel(name: str, stamp: tuple[int, ...], record: str, body: bytes = b"x = 1\n") -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(zipfile.ZipInfo("pkg/a.py", stamp), body)
            z.writestr(zipfile.ZipInfo("pkg-0.1.dist-info/RECORD", stamp), record)
        return path

    first = wheel("a.whl", (2020, 1, 1, 0, 0, 0), "r1")
    assert wheel_digest(first) == wheel_digest(wheel("b.whl", (2024, 5, 5, 5, 5, 4), "r2"))
    assert wheel_digest(first) != wheel_digest(wheel("c.whl", (2020, 1, 1, 0, 0, 0), "r1", b"x = 2\n"))


def _emulated_report() -> Report:
    checks = [{"name": "p99", "limit": 200, "value": 9000, "status": "fail", "message": "p99 over"},
              {"name": "map_drop", "limit": 0.02, "value": 0.0, "status": "pass", "message": "ok"}]
    flags = [{"kind": "noisy", "reason": "load 4"}, {"kind": "proxy", "reason": "aarch64"},
             {"kind": "suspect", "reason": "zero detections"}]
    rows = [row("ncnn", "fp32", p99=9000.0, ap=0.60, budget_checks=checks, verified="host proxy", flags=flags,
                artifact="/edgebench-runs/x/artifacts/m.param"),
            row("ncnn", "fp16", p99=8000.0, ap=0.59, verified="host proxy"),
            new_result("ncnn", "int8", status="skipped", error="no", verified=NOT_MEASURABLE)]
    report = new_report(status="complete", profile={"name": "rpi5"}, results=rows)
    return mark_emulated(report, "arm64", "cortex-a76", "7.2.22", wall_s=123.4)


def test_marking_drops_timings_keeps_accuracy_and_round_trips():
    report = _emulated_report()
    fp32, fp16, int8 = report.results
    assert (fp32.verified, fp16.verified, int8.verified) == (EMULATED, EMULATED, NOT_MEASURABLE)
    assert fp32.latency_ms is None and fp32.fps is None and fp32.accuracy.AP == 0.60
    assert fp32.memory.peak_rss_mb is None and fp32.memory.model_size_mb == 12.0
    assert [c.name for c in fp32.budget_checks] == ["map_drop"]
    assert [f.kind for f in fp32.flags] == ["suspect"] and fp16.flags is None
    relocate(report, "/edgebench-runs/x", "/host/out/")
    assert fp32.artifact == "/host/out/artifacts/m.param"
    data = json.loads(json.dumps(report.to_dict()))
    validate_report(data)
    back = Report.from_dict(data, "report")
    assert back.results[0].verified == EMULATED and back.results[0].extra["emulation"]["cpu"] == "cortex-a76"
    assert back.environment["emulation"]["wall_s"] == 123.4 and data["schema_version"] == 1
    text = render_markdown(back)
    assert "emulated arm64 (cortex-a76 under qemu 7.2.22): accuracy and parity valid, timings not" in text
    assert "emulated = run under CPU emulation" in text


def test_compare_never_ranks_emulated_rows_by_speed():
    host_report = new_report(status="complete", profile={"name": "rpi5"},
                             results=[row("ncnn", "fp32", p99=150.0, ap=0.60)])
    result = compare([("x86.json", host_report), ("arm.json", _emulated_report())],
                     CompareOptions(max_p99_ms=200.0))
    rows = {r["label"]: r for r in result["rows"]}
    assert result["recommendation"] == "x86.json: ncnn/fp32@640"
    for label in ("arm.json: ncnn/fp32@640", "arm.json: ncnn/fp16@640"):
        assert [x["code"] for x in rows[label]["rejected"]] == ["emulated"] and rows[label]["pareto"] is not True
    assert "emulated: run under CPU emulation" in render_compare_markdown(result)
    only_emulated = compare([("arm.json", _emulated_report())], CompareOptions())
    assert only_emulated["recommendation"] is None


@pytest.mark.skipif(os.environ.get(ARM64_ENV) != "1", reason=SKIP_REASON)
def test_real_emulated_ncnn_run_on_arm64(tmp_path):
    """The bundled model on rpi5's ncnn, fp32 and fp16, 5 images, under qemu cortex-a76. fp32 reports fp32 and
    its raw outputs match x86 fp32 to fp32 rounding (the ARM and x86 kernels sum in other orders: not bit
    for bit); fp16 really computes fp16 on ARM (ncnn's fp16 kernels), where x86 refuses it."""
    import numpy as np

    from bench.emulate.probe import compare_raw, raw_outputs
    from bench.emulate.runner import run_python

    out = tmp_path / "arm"
    proc = subprocess.run([sys.executable, "-m", "bench", "emulate", "--arch", "arm64", "--", "run", "--profile",
                           "rpi5", "--backend", "ncnn", "--precisions", "fp32,fp16", "--max-images", "5",
                           "--out", str(out)], capture_output=True, text=True, timeout=3600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["precision"]: r for r in json.loads((out / "report.json").read_text())["results"]}
    assert {r["verified"] for r in rows.values()} == {EMULATED}
    assert rows["fp32"]["precision_used"] == "fp32" and rows["fp16"]["precision_used"] == "fp16"
    assert rows["fp32"]["latency_ms"] is None and rows["fp32"]["accuracy"]["AP"] > 0.3
    assert rows["fp32"]["parity"]["passed"] is True
    param = Path(rows["fp32"]["artifact"])
    assert param.is_file()  # brought back to the host's --out
    for precision in ("fp32", "fp16"):
        code = run_python(["-m", "bench.emulate.probe", str(param), precision, str(tmp_path / f"arm-{precision}.npz")],
                          [(tmp_path, True)], log=lambda _: None)
        assert code == 0
    x86 = raw_outputs(param, "fp32")
    arm32, arm16 = (dict(np.load(tmp_path / f"arm-{p}.npz")) for p in ("fp32", "fp16"))
    assert str(arm32["precision_used"]) == "fp32" and str(arm16["precision_used"]) == "fp16"
    scale = max(float(np.max(np.abs(v))) for k, v in x86.items() if k.startswith("out"))
    assert compare_raw(x86, arm32)["max_abs"] <= 1e-5 * scale  # measured: 5.5e-4 px of 320 (1.7e-6)
    assert compare_raw(x86, arm16)["max_abs"] > 1e-3 * scale  # measured: 2.8 px
