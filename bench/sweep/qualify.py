"""Qualify measured rows: "noisy" when the run was unsteady or the host busy, "proxy" when this host is
not the profile's device; and the defaults a proxy run must not take from the profile as they are.

A proxy run (another device's profile on this host) measures this host's CPU, not the device: every
row says so, budget verdicts are proxy verdicts (bench.report.budgets.verdict), the thread count is
capped at this host's cores, and the profile's sustained run starts only on the device itself or when
asked with --duration. Noise limits are bench.measure.noise's (documented in docs/bench.md).
"""
from __future__ import annotations

from bench.measure.noise import noise_reasons
from bench.report.rows import Report, ResultRow
from edge_sdk.host import host_facts, host_matches
from edge_sdk.profiles import DeviceProfile
from runtimes.threads import physical_cores


def qualify(row: ResultRow, profile: DeviceProfile, matches: bool | None = None) -> ResultRow:
    """Add the "noisy" flag (figures past the noise limits) and the "proxy" flag (host is not the
    profile's device) to a measured row; other rows are returned as they are."""
    if not row.measured:
        return row
    reasons = _noise(row)
    if reasons:
        row.add_flag("noisy", "; ".join(reasons))
    if not (host_matches(profile)[0] if matches is None else matches):
        row.add_flag("proxy", proxy_reason(profile))
    return row


def proxy_reason(profile: DeviceProfile) -> str:
    """'measured on <host CPU>, not <device>'."""
    return f"measured on {host_facts().get('cpu_model') or 'this host'}, not {profile.device or profile.name}"


def _noise(row: ResultRow) -> list[str]:
    st = row.stability
    if st is None:
        return []
    return noise_reasons(st.p50_spread, st.steal_during_pct, st.load_during, st.cores, st.window_p50_ms or ())


def default_threads(profile: DeviceProfile, cores: int | None = None) -> int | None:
    """The profile's threads capped at this host's physical cores (None: the engine's default)."""
    if profile.threads is None:
        return None
    return min(profile.threads, cores if cores is not None else physical_cores())


def thread_notes(asked: int | None, profile: DeviceProfile) -> list[str]:
    """A note when the profile's thread count was reduced to this host's cores (none when asked)."""
    used = default_threads(profile)
    if asked is not None or used is None or profile.threads is None or used >= profile.threads:
        return []
    return [f"threads: {used}, not the profile's {profile.threads}: this host has {used} physical "
            f"core(s) (pass --threads to choose)"]


def sustained_duration(asked: float | None, profile: DeviceProfile, report: Report | None = None,
                       matches: bool | None = None) -> float:
    """Seconds of the sustained run: `asked` (--duration) when given; else the profile's
    bench.sustained_duration_s on the device itself, and none on a proxy host (a note in `report` says so)."""
    if asked is not None:
        return asked
    duration = profile.bench.sustained_duration_s or 0.0
    if not duration or (host_matches(profile)[0] if matches is None else matches):
        return duration
    if report is not None:
        report.notes = [*(report.notes or []), (
            f"the profile's {duration:g} s sustained run did not start: this host is not "
            f"{profile.device or profile.name} (pass --duration {duration:g} to run it here)")]
    return 0.0
