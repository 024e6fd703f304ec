"""The ARM /proc/cpuinfo shown inside the root filesystem, and the CPUs qemu may emulate.

qemu 7.2's user mode passes the host's x86 /proc/cpuinfo through, and ONNX Runtime's ARM build crashes
parsing it; an ARM cpuinfo bind-mounted over /proc/cpuinfo fixes that. The CPU qemu emulates is chosen
with QEMU_CPU (its default, `max`, has SVE and runs ~15x slower). The identity fields are the published
MIDR values of each core; the features are the hwcaps Linux lists for it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from bench.emulate.errors import EmulationError


@dataclass(frozen=True)
class ArmCpu:
    """One ARM core as /proc/cpuinfo describes it."""

    variant: str
    part: str
    revision: int
    features: str
    device: str


#: QEMU_CPU name -> its identity; cortex-a76 is the Raspberry Pi 5's core, cortex-a72 the Pi 4's
CPUS = {
    "cortex-a76": ArmCpu("0x4", "0xd0b", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                         "cpuid asimdrdm lrcpc dcpop asimddp", "Raspberry Pi 5"),
    "cortex-a72": ArmCpu("0x0", "0xd08", 3, "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4"),
    "cortex-a55": ArmCpu("0x2", "0xd05", 0, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                         "cpuid asimdrdm lrcpc dcpop asimddp", "phones' little cores"),
}
DEFAULT_CPU = "cortex-a76"


def arm_cpu(name: str) -> ArmCpu:
    """The table's entry for a QEMU_CPU name; EmulationError for one it does not know."""
    if name not in CPUS:
        raise EmulationError(f"--cpu {name} is not supported (supported: {', '.join(CPUS)})")
    return CPUS[name]


def cpuinfo_text(name: str, cores: int | None = None) -> str:
    """The /proc/cpuinfo of `cores` such cores (default: this host's logical cores)."""
    cpu = arm_cpu(name)
    blocks = []
    for i in range(max(1, cores or os.cpu_count() or 1)):
        blocks.append(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {cpu.features}\n"
                      f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {cpu.variant}\n"
                      f"CPU part\t: {cpu.part}\nCPU revision\t: {cpu.revision}\n")
    return "\n".join(blocks) + "\n"
