"""`edgebench emulate`: run `edgebench run` on emulated ARM64 (qemu user mode in a Debian chroot)."""
from __future__ import annotations

import click

from bench.emulate.cpuinfo import CPUS, DEFAULT_CPU
from bench.emulate.host import ARCHES
from bench.options import POSITIVE_SECONDS


@click.command("emulate", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--arch", type=click.Choice(sorted(ARCHES)), default="arm64", show_default=True,
              help="CPU architecture to emulate.")
@click.option("--cpu", type=click.Choice(sorted(CPUS)), default=DEFAULT_CPU, show_default=True,
              help="Core qemu emulates (QEMU_CPU): cortex-a76 is the Raspberry Pi 5's, cortex-a72 the Pi 4's.")
@click.option("--timeout", "timeout_s", type=POSITIVE_SECONDS.param_type(), default=None,
              help="Seconds allowed for the whole run inside (default: none; run's own --timeout still applies "
                   "per configuration).")
@click.option("--setup-only", is_flag=True,
              help="Only prepare the environment (packages, binfmt_misc, root filesystem, venv) and stop.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def command(arch: str, cpu: str, timeout_s: float | None, setup_only: bool, run_args: tuple[str, ...]) -> None:
    """Check a deployment's accuracy and parity on the real ARM kernels, from an x86 Linux host.

    \b
    edgebench emulate --arch arm64 [--cpu cortex-a76] -- run --profile rpi5 --model M --data D [run options]

    Runs `edgebench run` inside an arm64 Debian root filesystem under qemu user-mode emulation: the engines'
    own aarch64 wheels (ncnn, LiteRT/XNNPACK, ONNX Runtime) run their ARM kernels, so AP50-95, agreement mAP,
    parity and the precision the engine really used are those of the device's CPU. Timings are not: every
    row is marked "emulated" (latency, FPS and peak memory left out) and `compare` never ranks such rows by
    speed. Emulation is 35-220x slower than native: keep --max-images small (10-20).

    Needs root on a Debian/Ubuntu host. The first run installs qemu-user-static, binfmt-support, mmdebstrap
    and arch-test, mounts binfmt_misc, builds the root filesystem (~5 min, ~600 MB, cached in edgebench's
    cache dir) and a venv with this checkout's wheel and the engines at this host's versions. The model and
    data are bind-mounted read-only at their own paths; run's short timing defaults here are --warmup 1
    --min-iterations 3 --min-duration 0 --duration 0. The report lands in run's --out (default: a new
    runs/<date-time>-<profile>-emulated-arm64/).
    """
    from bench.emulate.runner import emulate_run, prepare, setup_venv
    from bench.report.writer import render_table

    def log(text: str) -> None:
        click.echo(text, err=True)

    if setup_only:
        setup_venv(prepare(arch, cpu, log), log)
        return
    if not run_args:
        raise click.UsageError("give the run to emulate after '--', e.g. -- run --profile rpi5 --max-images 10")
    result = emulate_run(list(run_args), arch, cpu, timeout_s, log)
    click.echo(render_table(result.report))
    click.echo(f"report: {result.out / 'report.json'}\nsummary: {result.out / 'report.md'}\n"
               f"html: {result.out / 'report.html'}")
    log(f"emulate: wall {result.wall_s:.0f} s (run inside {result.inner_s:.0f} s)")
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
