"""`edgebench emulate`: prepare the emulated environment, run `edgebench run` inside it, bring the report back
to the host's --out and mark it emulated."""
from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.emulate.chroot import VENV_INSIDE, inside_env, mounted, run_inside
from bench.emulate.cpuinfo import DEFAULT_CPU, arm_cpu, cpuinfo_text
from bench.emulate.errors import EmulationError
from bench.emulate.forward import Forwarded, calib_note, forward, share_default_calibration
from bench.emulate.host import prepare_host, require_root
from bench.emulate.marking import mark_emulated, relocate
from bench.emulate.rootfs import RootfsSpec, build_rootfs, copy_ca_bundle, spec_for
from bench.emulate.venv import build_wheel, ensure_venv
from bench.report.rows import Report

#: where a run inside writes its report (a folder of the root filesystem no bind mount covers)
RUNS_INSIDE = "/edgebench-runs"
#: the inner run's stdout (its own table, with its timings), kept next to the report
INNER_LOG = "emulated-run.log"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """A ready environment: its spec, the CPU's cpuinfo file and the environment of processes inside."""

    spec: RootfsSpec
    cpu: str
    cpuinfo: Path
    env: dict[str, str]
    built_s: float


@dataclass(frozen=True)
class EmulatedRun:
    """What `emulate_run` made: the marked report, its files, the inner run's exit code and the wall times."""

    report: Report
    out: Path
    exit_code: int
    wall_s: float
    inner_s: float


def prepare(arch: str = "arm64", cpu: str = DEFAULT_CPU, log: Log = print) -> Prepared:
    """Host checks, packages, binfmt_misc, the cached root filesystem, its CA bundle and cpuinfo file."""
    arm_cpu(cpu)  # an unknown --cpu fails before anything is installed
    qemu = prepare_host(arch)
    spec = spec_for(arch, qemu)
    log(f"emulate: root filesystem {spec.root}" + ("" if (spec.root / "usr/bin/python3").exists()
                                                   else " (building it once: about 5 minutes)"))
    built = build_rootfs(spec)
    ca = copy_ca_bundle(spec.root)
    cpuinfo = spec.home / f"cpuinfo-{cpu}"
    cpuinfo.write_text(cpuinfo_text(cpu))
    return Prepared(spec, cpu, cpuinfo, inside_env(cpu, str(ca) if ca else None), built)


def setup_venv(env: Prepared, log: Log = print) -> bool:
    """Build this checkout's wheel and make the venv inside hold it (mounts only while pip runs)."""
    wheel = build_wheel(env.spec.home / "wheels")
    with mounted(env.spec.root, env.cpuinfo):
        installed = ensure_venv(env.spec.root, env.env, wheel)
    log(f"emulate: venv {VENV_INSIDE} " + ("installed" if installed else "up to date") + f" ({wheel.name})")
    return installed


def host_out(fwd: Forwarded, arch: str) -> Path:
    """The host folder receiving the report: run's --out (checked like run checks it), else a new
    runs/<date-time>-<profile>-emulated-<arch>/."""
    from bench.sweep.outdir import DEFAULT_ROOT, check_out, profile_name, stamped

    if fwd.out is not None:
        out = Path(fwd.out)
        check_out(out, fwd.overwrite)
        return out
    return stamped(DEFAULT_ROOT, f"{profile_name(fwd.profile)}-emulated-{arch}")


def emulate_run(run_args: Sequence[str], arch: str = "arm64", cpu: str = DEFAULT_CPU,
                timeout_s: float | None = None, log: Log = print) -> EmulatedRun:
    """Run `edgebench run ARGS` on emulated `arch`/`cpu` and write the marked report into the host's --out."""
    start = time.monotonic()
    require_root()
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    fwd = forward(run_args, f"{RUNS_INSIDE}/{run_id}")
    if any(b == Path("/") for b in fwd.binds):
        raise EmulationError("a path option names a file in / itself; move it into a folder")
    out = host_out(fwd, arch)
    note = calib_note(fwd)
    shared = share_default_calibration(fwd) if note else None
    if shared is not None:
        log(f"emulate: int8 calibrates on the host's cached synthetic set, shared read-only: {shared}:train")
    elif note:
        log(f"emulate: note: {note}")
    env = prepare(arch, cpu, log)
    setup_venv(env, log)
    inner = env.spec.root / RUNS_INSIDE.lstrip("/") / run_id
    inner.mkdir(parents=True)
    log(f"emulate: {arch}/{cpu}: edgebench {' '.join(fwd.args)} (its table: {out / INNER_LOG})")
    t0 = time.monotonic()
    with mounted(env.spec.root, env.cpuinfo, [(b, False) for b in fwd.binds]), \
            (inner / INNER_LOG).open("w") as inner_log:
        proc = run_inside(env.spec.root, env.env, [f"{VENV_INSIDE}/bin/edgebench", *fwd.args], timeout=timeout_s,
                          stdout=inner_log)
    inner_s = time.monotonic() - t0
    report = bring_back(inner, f"{RUNS_INSIDE}/{run_id}", out, (arch, cpu, env.spec.qemu),
                        time.monotonic() - start, proc.returncode)
    return EmulatedRun(report, out, proc.returncode, time.monotonic() - start, inner_s)


def bring_back(inner: Path, inside: str, out: Path, target: tuple[str, str, str], wall_s: float,
               code: int) -> Report:
    """Copy the inner run's folder (`inner` on the host, `inside` in the chroot) to `out`, mark its report
    emulated on target (arch, cpu, qemu version) and write report.json/.md/.html again."""
    from bench.report.html import write_html_report
    from bench.report.writer import load_report, write_report

    if not (inner / "report.json").is_file():
        raise EmulationError(f"the run under emulation wrote no report (exit {code}); its folder: {inner}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(inner, out, dirs_exist_ok=True)
    shutil.rmtree(inner)
    report = mark_emulated(load_report(out / "report.json"), *target, wall_s=wall_s)
    relocate(report, inside, str(out.resolve()))
    write_report(report, out)
    write_html_report(report, out)
    return report


def run_python(args: Sequence[str], binds: Sequence[tuple[Path, bool]] = (), arch: str = "arm64",
               cpu: str = DEFAULT_CPU, timeout_s: float | None = None, log: Log = print) -> int:
    """`python ARGS` of the venv inside (e.g. `-m bench.emulate.probe ...`), each (host folder, writable)
    bind-mounted at its own path; returns its exit code."""
    env = prepare(arch, cpu, log)
    setup_venv(env, log)
    with mounted(env.spec.root, env.cpuinfo, [(b.resolve(), w) for b, w in binds]):
        proc = run_inside(env.spec.root, env.env, [f"{VENV_INSIDE}/bin/python", *args], timeout=timeout_s)
    return proc.returncode
