"""What this host lacks to run a backend, what stands in for it, and what a row's figures were verified on.

The facts come from the capability table (runtimes.capabilities: the engine package, the hardware a backend
needs) and edge_sdk.host (OS, machine, accelerators, NVIDIA GPUs, a Jetson's L4T release); the NVIDIA driver
and a driverless NVIDIA card on the PCI bus are looked for here, so "what is missing" names the package, the
driver or the GPU, each as it is.

"verified on hardware" (bench.report.rows.VERIFIED) is a fact of (profile, backend, host): "not measurable"
when this host lacks the backend's hardware (Core ML prediction off macOS, TensorRT without an NVIDIA GPU),
else "device" when this host is the profile's device (edge_sdk.host.host_matches), else "host proxy".
"""
from __future__ import annotations

import ctypes.util
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.report.rows import DEVICE, HOST_PROXY, NOT_MEASURABLE, ResultRow
from edge_sdk.host import check_runnable, host_facts, host_matches, no_accelerator
from edge_sdk.profiles import DeviceProfile
from runtimes.capabilities import get as capability
from runtimes.errors import HardwareUnavailableError
from runtimes.registry import availability

#: present when the NVIDIA kernel driver is loaded (desktop and server GPUs)
NVIDIA_PROC = "/proc/driver/nvidia/version"
PCI_DEVICES = "/sys/bus/pci/devices"
NVIDIA_PCI_VENDOR = "0x10de"
#: ONNX Runtime's execution providers that run on an NVIDIA GPU (onnxruntime-gpu)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def nvidia_driver(facts: Mapping[str, Any] | None = None) -> str | None:
    """Where the NVIDIA driver was found (its /proc entry, libcuda, a Jetson's L4T release), or None."""
    f = facts if facts is not None else host_facts()
    if Path(NVIDIA_PROC).exists():
        return NVIDIA_PROC
    lib = _libcuda()
    if lib:
        return lib
    return "L4T (Jetson)" if f.get("tegra_release") else None


@functools.lru_cache(maxsize=1)
def _libcuda() -> str | None:
    """The CUDA driver library's name as the loader finds it (ldconfig), or None."""
    return ctypes.util.find_library("cuda")


def nvidia_pci_cards(root: str = PCI_DEVICES) -> list[str]:
    """PCI addresses of NVIDIA display/3D controllers, whether or not a driver claims them (Linux only)."""
    cards = []
    for dev in sorted(Path(root).glob("*")) if Path(root).is_dir() else ():
        vendor, cls = _read(dev / "vendor"), _read(dev / "class")
        if vendor == NVIDIA_PCI_VENDOR and cls.startswith("0x03"):
            cards.append(dev.name)
    return cards


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip().lower()
    except OSError:
        return ""


def hardware_missing(backend: str, facts: Mapping[str, Any] | None = None) -> list[str]:
    """What this host lacks of the hardware `backend` needs (capability `hardware`), one phrase each ("no NVIDIA
    GPU (...)"); [] when it needs none or has it."""
    need = capability(backend).hardware
    f = facts if facts is not None else host_facts()
    if need is None or need in f.get("accelerators", ()):
        return []
    if need == "nvidia-gpu":
        return _nvidia_missing(f)
    if need == "apple":
        return [f"{backend} prediction needs macOS or iOS on Apple silicon (this host runs {f.get('os', '?')} "
                f"on {f.get('machine', '?')})"]
    return [no_accelerator(need)]


def _nvidia_missing(facts: Mapping[str, Any]) -> list[str]:
    driver = nvidia_driver(facts)
    cards = nvidia_pci_cards()
    if cards:  # a card the driver does not drive: only the driver is missing
        return [f"no NVIDIA driver (an NVIDIA card is on the PCI bus at {', '.join(cards)}, but nvidia-smi "
                "and /dev/nvidia0 are absent)"]
    pieces = [] if driver else ["no NVIDIA driver (no libcuda, no /proc/driver/nvidia)"]
    return [*pieces, "no NVIDIA GPU (nvidia-smi lists none, no /dev/nvidia0, none on the PCI bus)"]


def missing_pieces(backend: str, facts: Mapping[str, Any] | None = None) -> list[str]:
    """Everything this host lacks to run `backend`: no runtime in this version, its package, its hardware."""
    ok, why = availability(backend)
    return ([] if ok else [why]) + hardware_missing(backend, facts)


def missing_line(backend: str, facts: Mapping[str, Any] | None = None) -> str | None:
    """'B: piece; piece' (not implemented, its package, no NVIDIA driver, no NVIDIA GPU, ...), or None when this
    host lacks nothing to run `backend`."""
    pieces = missing_pieces(backend, facts)
    return f"{backend}: " + "; ".join(pieces) if pieces else None


def not_measurable(backend: str, facts: Mapping[str, Any] | None = None) -> str | None:
    """'latency and accuracy not measurable on this host: <hardware missing>' when this host lacks the backend's
    hardware, else None."""
    pieces = hardware_missing(backend, facts)
    return "latency and accuracy not measurable on this host: " + "; ".join(pieces) if pieces else None


def verified_for(profile: DeviceProfile, backend: str, facts: Mapping[str, Any] | None = None) -> str:
    """"not measurable", "device" or "host proxy" for rows of `backend` under `profile` on this host."""
    f = dict(facts) if facts is not None else host_facts()
    if hardware_missing(backend, f):
        return NOT_MEASURABLE
    return DEVICE if host_matches(profile, f)[0] else HOST_PROXY


def mark_verified(row: ResultRow, profile: DeviceProfile) -> ResultRow:
    """Set the row's `verified` (unless already set)."""
    if row.verified is None:
        row.verified = verified_for(profile, row.backend)
    return row


def ort_providers() -> list[str]:
    """ONNX Runtime's available execution providers ([] without onnxruntime)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def proxy_note(proxy: str, facts: Mapping[str, Any] | None = None) -> str:
    """How the stand-in backend runs here: for ONNX Runtime, which execution provider it will use."""
    if proxy != "onnxruntime":
        return f"the profile's host proxy {proxy} runs the model here; its rows are marked host proxy"
    f = facts if facts is not None else host_facts()
    listed = ort_providers()
    gpu = [p for p in GPU_PROVIDERS if p in listed]
    if gpu and "nvidia-gpu" in f.get("accelerators", ()):
        return (f"the profile's host proxy onnxruntime runs the ONNX through {gpu[0]} here (execution providers: "
                f"{', '.join(listed)}); its rows are marked host proxy")
    why = (f"it lists {', '.join(gpu)} but this host has no NVIDIA GPU" if gpu else
           f"its execution providers here are {', '.join(listed) or 'none'}: no TensorRT or CUDA one "
           "(those need onnxruntime-gpu and an NVIDIA GPU)")
    return f"the profile's host proxy onnxruntime runs the ONNX on the CPU ({why}); its rows are marked host proxy"


def profile_backends(profile: DeviceProfile, facts: Mapping[str, Any] | None = None) -> tuple[tuple[str, ...],
                                                                                                 list[str]]:
    """(the backends a run of `profile` measures here, notes). The profile's backend when it runs here, or when
    this host converts to it and checks the artifact without running it (its rows: not measurable); else the
    profile's backend (its rows say what is missing) and its host proxy. A profile without a usable proxy is
    refused with edge_sdk.host.check_runnable's typed error."""
    backend = profile.backend
    pieces = missing_pieces(backend, facts)
    if not pieces:
        return (backend,), []
    cap = capability(backend)
    if availability(backend)[0] and cap.converter and cap.inspector:
        return (backend,), [f"{backend}: {not_measurable(backend, facts)}; its artifacts are converted and "
                            "checked without running them"]
    proxy = profile.host_proxy
    if proxy and not missing_pieces(proxy, facts):
        return (backend, proxy), [f"{backend} cannot run on this host ({'; '.join(pieces)}): "
                                  f"{proxy_note(proxy, facts)}"]
    check_runnable(profile)  # raises the typed error of the first missing piece
    raise HardwareUnavailableError(f"profile '{profile.name}': {backend} cannot run on this host "
                                   f"({'; '.join(pieces)})")
