"""Device profiles: schema validation, built-in files, host matching, runnability checks."""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import pytest

from edge_sdk import host
from edge_sdk.profiles import DeviceProfile, list_profiles, load_profile
from runtimes import registry
from runtimes.errors import (
    BackendNotImplementedError,
    BackendUnavailableError,
    HardwareUnavailableError,
    ProfileError,
)

BUILTINS = ["android-arm64", "iphone15", "jetson-orin", "jetson-orin-nano", "rpi4", "rpi5",
            "x86-cpu"]
ON_X86 = platform.machine().lower() in ("x86_64", "amd64")

MINIMAL = """\
device: Test box
backend: onnxruntime
precisions: [fp32]
input_size: 320
"""


def write(tmp_path: Path, text: str, name: str = "box.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


# ----------------------------------------------------------------------------- built-ins

def test_list_profiles_has_every_device():
    assert list_profiles() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_round_trips(name: str, tmp_path: Path):
    profile = load_profile(name)
    assert profile.name == name
    spec = registry.get(profile.backend)
    assert set(profile.precisions) <= set(spec.runs)
    again = load_profile(write(tmp_path, profile.to_yaml(), f"{name}.yaml"))
    assert again == profile and again.to_dict() == profile.to_dict()


@pytest.mark.parametrize("name, backend, precision, fps", [
    ("jetson-orin", "tensorrt", "fp16", (90, 120)),
    ("rpi5", "ncnn", "int8", (8, 15)),
    ("iphone15", "coreml", "fp16", (30, 45)),
])
def test_seed_reference_ranges(name: str, backend: str, precision: str, fps: tuple):
    ref = load_profile(name).reference
    assert load_profile(name).backend == backend
    assert (ref.precision, ref.fps, ref.imgsz) == (precision, fps, 640)


def test_minimal_profile_gets_defaults_and_name_from_file(tmp_path: Path):
    p = load_profile(write(tmp_path, MINIMAL))
    assert p.name == "box" and p.source == str(tmp_path / "box.yaml")
    assert (p.accuracy.conf, p.accuracy.iou, p.accuracy.max_det, p.accuracy.multi_label) == (
        0.001, 0.7, 300, True)
    assert (p.deploy.conf, p.deploy.iou, p.deploy.max_det) == (0.25, 0.7, 300)
    assert p.threads is None and p.batch == 1 and p.reference is None and p.host is None
    assert p.imgsz == (320, 320)


def test_rectangular_input_size(tmp_path: Path):
    p = load_profile(write(tmp_path, MINIMAL.replace("input_size: 320", "input_size: [384, 640]")))
    assert p.imgsz == (384, 640) and p.to_dict()["input_size"] == [384, 640]


# ----------------------------------------------------------------------------- schema errors

def test_unknown_top_level_key_suggests(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL + "treads: 2\n")
    assert "unknown key 'treads'" in msg and "did you mean 'threads'?" in msg


def test_unknown_nested_key_names_section(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL + "bench:\n  warmpu: 3\n")
    assert "unknown key 'warmpu' in section 'bench' (did you mean 'warmup'?)" in msg


def test_unknown_key_in_list_entry(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL + "host:\n  any_of:\n    - pth: /etc/x\n")
    assert "unknown key 'pth' in section 'host.any_of[0]' (did you mean 'path'?)" in msg


def test_unknown_key_without_close_match_lists_valid(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL + "budgets:\n  zzz: 1\n")
    assert "unknown key 'zzz'" in msg and "max_p99_ms" in msg


@pytest.mark.parametrize("line, key", [
    ("threads: four", "threads"),
    ("batch: true", "batch"),
    ("bench: {warmup: 1.5}", "bench.warmup"),
    ("budgets: {max_p99_ms: fast}", "budgets.max_p99_ms"),
    ("accuracy: {multi_label: 1}", "accuracy.multi_label"),
    ("deploy: {conf: 1.5}", "deploy.conf"),
    ("bench: [1, 2]", "bench"),
])
def test_bad_value_names_key(tmp_path: Path, line: str, key: str):
    assert f"'{key}'" in load_error(tmp_path, MINIMAL + line + "\n")


@pytest.mark.parametrize("size", ["[640]", "'640'", "300", "[640, 0]"])
def test_bad_input_size(tmp_path: Path, size: str):
    msg = load_error(tmp_path, MINIMAL.replace("input_size: 320", f"input_size: {size}"))
    assert "'input_size" in msg


def test_unknown_backend(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL.replace("onnxruntime", "tensort"))
    assert "key 'backend'" in msg and "'tensort'" in msg and "did you mean 'tensorrt'?" in msg


def test_precision_not_supported_by_backend(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL.replace("[fp32]", "[fp32, bf16]"))
    assert "precisions[1]" in msg and "'bf16'" in msg and "not supported by backend 'onnxruntime'" in msg


def test_unknown_precision_lists_the_valid_ones(tmp_path: Path):
    msg = load_error(tmp_path, MINIMAL.replace("[fp32]", "[fp32, int4]"))
    assert "precisions[1]" in msg and "unknown precision 'int4' (valid: fp32, fp16, bf16, int8, mixed)" in msg


def test_reference_precision_and_range_checked(tmp_path: Path):
    ref = "reference: {fps: [10, 5], precision: fp32}\n"
    assert "reference.fps" in load_error(tmp_path, MINIMAL + ref)
    ref = "reference: {fps: [5, 10], precision: bf16}\n"
    assert "reference.precision" in load_error(tmp_path, MINIMAL + ref)


@pytest.mark.parametrize("text, key", [
    (MINIMAL.replace("backend: onnxruntime\n", ""), "'backend'"),
    (MINIMAL + "reference: {fps: [1, 2]}\n", "'reference.precision'"),
])
def test_missing_required_key(tmp_path: Path, text: str, key: str):
    msg = load_error(tmp_path, text)
    assert "missing required key" in msg and key in msg


def test_host_rule_values_checked(tmp_path: Path):
    assert "host.os[0]" in load_error(tmp_path, MINIMAL + "host: {os: [plan9]}\n")
    assert "host.accelerator" in load_error(tmp_path, MINIMAL + "host: {accelerator: tpu}\n")


def test_duplicate_key_and_bad_yaml(tmp_path: Path):
    assert "duplicate key 'batch'" in load_error(tmp_path, MINIMAL + "batch: 1\nbatch: 2\n")
    assert "invalid YAML" in load_error(tmp_path, MINIMAL + "bench: {warmup: [\n")
    assert "must be a mapping" in load_error(tmp_path, "- just a list\n")


def test_unknown_profile_name_lists_builtins_and_host_match():
    with pytest.raises(ProfileError) as err:
        load_profile("x86_cpu")
    msg = str(err.value)
    assert "unknown profile 'x86_cpu'" in msg and "did you mean 'x86-cpu'?" in msg
    assert all(name in msg for name in BUILTINS)
    assert "matching this host" in msg


def test_missing_profile_file(tmp_path: Path):
    with pytest.raises(ProfileError, match="profile file not found"):
        load_profile(tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- host matching

def test_host_facts_are_sane_and_copied():
    facts = host.host_facts()
    assert facts["logical_cores"] >= facts["physical_cores"] >= 1
    assert facts["python"] == platform.python_version()
    assert facts["machine"] == platform.machine()
    assert all(isinstance(f, str) for f in facts["cpu_flags"])
    facts["cpu_flags"].append("mutated")
    assert "mutated" not in host.host_facts()["cpu_flags"]


def test_short_commands_never_raise():
    assert host._run(["definitely-not-a-command-xyz"]) is None
    assert host._run(["false"]) is None
    assert host._run(["sleep", "5"], timeout=0.2) is None


@pytest.mark.skipif(not ON_X86, reason="x86-cpu describes x86-64 hosts")
def test_this_host_is_x86_cpu():
    assert host.host_matches(load_profile("x86-cpu")) == (True, "")
    assert host.match_host_profile() == "x86-cpu"


@pytest.mark.parametrize("name", ["jetson-orin", "jetson-orin-nano", "rpi5", "rpi4", "iphone15",
                                  "android-arm64"])
def test_device_profiles_do_not_match_this_host(name: str):
    ok, why = host.host_matches(load_profile(name))
    assert not ok and why


def fake_facts(**over) -> dict:
    base = {"os": "linux", "machine": "aarch64", "cpu_flags": ["fp", "asimd"],
            "device_tree_model": None, "tegra_release": None, "accelerators": []}
    return base | over


@pytest.mark.parametrize("facts, expected", [
    (fake_facts(device_tree_model="Raspberry Pi 5 Model B Rev 1.0"), "rpi5"),
    (fake_facts(device_tree_model="Raspberry Pi 4 Model B Rev 1.4"), "rpi4"),
    (fake_facts(device_tree_model="NVIDIA Jetson AGX Orin Developer Kit",
                tegra_release="# R36 (release)", accelerators=["nvidia-gpu"]), "jetson-orin"),
    (fake_facts(device_tree_model="NVIDIA Jetson Orin Nano Developer Kit",
                tegra_release="# R36 (release)", accelerators=["nvidia-gpu"]), "jetson-orin-nano"),
    (fake_facts(os="android"), "android-arm64"),
    (fake_facts(os="ios", machine="arm64", accelerators=["apple"]), "iphone15"),
])
def test_fake_hosts_match_exactly_one_profile(monkeypatch, facts: dict, expected: str):
    monkeypatch.setattr(host, "host_facts", lambda: facts)
    matches = [n for n in BUILTINS if host.host_matches(load_profile(n))[0]]
    assert matches == [expected]
    assert host.match_host_profile() == expected


def test_jetson_without_gpu_and_unknown_host(monkeypatch):
    facts = fake_facts(tegra_release="# R36", device_tree_model="NVIDIA Jetson AGX Orin")
    ok, why = host.host_matches(load_profile("jetson-orin"), facts)
    assert not ok and "NVIDIA GPU" in why
    monkeypatch.setattr(host, "host_facts", lambda: fake_facts(machine="riscv64"))
    with pytest.raises(ProfileError, match="no built-in profile matches this host"):
        host.match_host_profile()


# ----------------------------------------------------------------------------- check_runnable

@pytest.fixture
def x86_host(monkeypatch):
    """This host as an x86 box without a GPU, whatever machine runs the tests."""
    facts = fake_facts(machine="x86_64", cpu_flags=["avx2"])
    monkeypatch.setattr(host, "host_facts", lambda: facts)


def implemented(monkeypatch, backend: str) -> None:
    spec = registry.BACKENDS[backend]
    monkeypatch.setitem(registry.BACKENDS, backend,
                        dataclasses.replace(spec, runtime=spec.runtime or "runtimes.fake:Fake"))


def test_x86_cpu_is_runnable(x86_host):
    host.check_runnable(load_profile("x86-cpu"))


@pytest.mark.parametrize("name, backend", [("jetson-orin", "tensorrt"), ("rpi5", "ncnn")])
def test_edge_profiles_not_runnable_here(x86_host, name: str, backend: str):
    if registry.BACKENDS[backend].runtime is None:
        expected: type = BackendNotImplementedError
    elif not registry.is_installed(backend):
        expected = BackendUnavailableError
    else:
        pytest.skip(f"{backend} is implemented and installed here")
    with pytest.raises(expected) as err:
        host.check_runnable(load_profile(name))
    msg = str(err.value)
    assert backend in msg and "'x86-cpu'" in msg and "\n" not in msg


def test_missing_package_names_package_extra_and_host_profile(x86_host, monkeypatch):
    implemented(monkeypatch, "tensorrt")
    monkeypatch.setattr(host, "is_installed", lambda name: False)
    with pytest.raises(BackendUnavailableError) as err:
        host.check_runnable(load_profile("jetson-orin"))
    msg = str(err.value)
    assert "'tensorrt'" in msg and "pip install 'edgebench[tensorrt]'" in msg
    assert "profile 'jetson-orin'" in msg and "'x86-cpu'" in msg


def test_missing_gpu_is_hardware_error(x86_host, monkeypatch):
    implemented(monkeypatch, "tensorrt")
    monkeypatch.setattr(host, "is_installed", lambda name: True)
    with pytest.raises(HardwareUnavailableError) as err:
        host.check_runnable(load_profile("jetson-orin"))
    assert str(err.value) == ("profile 'jetson-orin' needs an NVIDIA GPU (tensorrt); none found on "
                              "this host; the built-in profile matching this host is 'x86-cpu'")


def test_profile_type_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_profile("rpi5").threads = 8  # type: ignore[misc]
    assert isinstance(load_profile("rpi5"), DeviceProfile)
