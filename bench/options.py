"""Option rules shared by the CLI and the Python API: ranges, the stride rule, the threads warning,
and the one mechanism for deprecated option spellings.

A `Rule` is written once and used twice: as the click type of a CLI option (a bad value is one
`error:` line and exit 2 before anything loads) and by `validate_run_options` (a typed InputError for
RunOptions / SweepOptions built in Python).
"""
from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TypeVar

import click
from click.core import ParameterSource

from runtimes.errors import InputError

#: Input sizes must be a multiple of the model stride (32 for every model we export).
STRIDE = 32

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Rule:
    """A numeric range: integer or float, a lower bound (open or closed) and an optional upper bound."""

    integer: bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def param_type(self) -> click.ParamType[Any]:
        """The click type enforcing this rule (a float must also be finite: no nan, no inf)."""
        if self.integer:
            return click.IntRange(min=_int(self.low), max=_int(self.high))
        return FiniteFloatRange(min=self.low, max=self.high, min_open=self.low_open)

    def describe(self) -> str:
        """The rule in words, e.g. 'an integer >= 1' or 'a number in (0, 1]'."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            return f"{kind} in {left}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return kind

    def check(self, name: str, value: Any) -> None:
        """InputError naming `name` when `value` breaks the rule (None means 'not set' and passes)."""
        if value is None:
            return
        if not self._in_range(value):
            raise InputError(f"{name} must be {self.describe()}, got {value!r}")

    def _in_range(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return False
        v = float(value)
        if not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return self.high is None or v <= self.high


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (which compare as in range or hang a run)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return number


#: Upper bounds no real use reaches; above them a value is a typo that would hang, overflow or exhaust
#: memory (documented in docs/bench.md, "Option limits").
MAX_SECONDS = 7 * 24 * 3600.0  #: durations, timeouts, windows: 7 days
MAX_THREADS = 1024  #: engine threads
MAX_ITERATIONS = 1_000_000  #: warm-up and minimum timed iterations
MAX_PARITY_IMAGES = 1000  #: export --parity-images
MAX_SYNTH_IMAGES = 1_000_000  #: data synth --train / --val
MAX_IMGSZ = 8192  #: input sizes (pixels, a multiple of STRIDE)

COUNT = Rule(integer=True, low=1)  #: images, frames, batch, max_det
NON_NEGATIVE = Rule(integer=True, low=0)  #: seeds, workers, epochs of patience
THREADS = Rule(integer=True, low=1, high=MAX_THREADS)  #: engine threads
ITERATIONS = Rule(integer=True, low=1, high=MAX_ITERATIONS)  #: minimum timed iterations
WARMUP = Rule(integer=True, low=0, high=MAX_ITERATIONS)  #: warm-up iterations
PARITY_IMAGES = Rule(integer=True, low=1, high=MAX_PARITY_IMAGES)  #: parity-check frames
SYNTH_IMAGES = Rule(integer=True, low=0, high=MAX_SYNTH_IMAGES)  #: synthetic images to write
CONF = Rule(integer=False, low=0.0, high=1.0)  #: confidence thresholds, probabilities, fractions
IOU = Rule(integer=False, low=0.0, high=1.0, low_open=True)  #: NMS IoU
SECONDS = Rule(integer=False, low=0.0, high=MAX_SECONDS)  #: durations where 0 means none
POSITIVE_SECONDS = Rule(integer=False, low=0.0, high=MAX_SECONDS, low_open=True)  #: timeouts, windows
POSITIVE = Rule(integer=False, low=0.0, low_open=True)  #: learning rates
MAX_CALIB_IMAGES = 100_000  #: --calib-images
CALIB_IMAGES = Rule(integer=True, low=1, high=MAX_CALIB_IMAGES)  #: calibration images

#: RunOptions / SweepOptions field -> (its CLI option, its rule) (validate_run_options).
RUN_RULES: dict[str, tuple[str, Rule]] = {
    "threads": ("--threads", THREADS), "warmup": ("--warmup", WARMUP),
    "min_iterations": ("--min-iterations", ITERATIONS), "min_duration_s": ("--min-duration", SECONDS),
    "max_eval_images": ("--max-images", COUNT), "timeout_s": ("--timeout", POSITIVE_SECONDS),
    "reference_conf": ("--reference-conf", CONF), "duration_s": ("--duration", SECONDS),
    "window_s": ("--window", POSITIVE_SECONDS), "calib_images": ("--calib-images", CALIB_IMAGES),
}


def check_imgsz(value: Any, name: str = "imgsz") -> int:
    """`value` as an input size: a positive integer multiple of the model stride, at most MAX_IMGSZ, else
    InputError."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 or value % STRIDE
            or int(value) > MAX_IMGSZ):
        raise InputError(f"{name} {value!r}: an input size must be a positive multiple of {STRIDE}, "
                         f"at most {MAX_IMGSZ}")
    return int(value)


class ImgszType(click.types.IntParamType):
    """One input size: a positive integer multiple of the stride."""

    name = "imgsz"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = super().convert(value, param, ctx)
        try:
            return check_imgsz(number, "")
        except InputError:
            self.fail(f"{number} is not a positive multiple of {STRIDE} up to {MAX_IMGSZ}", param, ctx)


class SizeListType(click.ParamType[tuple[int, ...]]):
    """A comma list of input sizes, each a positive multiple of the stride (e.g. '320,416,640')."""

    name = "sizes"
    numeric = True  # tests/test_option_validation.py treats it as a numeric option

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail("expected a comma list of input sizes", param, ctx)
        sizes = []
        for part in parts:
            try:
                sizes.append(check_imgsz(int(part), ""))
            except ValueError:
                self.fail(f"'{part}' is not an integer", param, ctx)
            except InputError:
                self.fail(f"{part} is not a positive multiple of {STRIDE} up to {MAX_IMGSZ}", param, ctx)
        return tuple(sizes)


class LimitType(click.ParamType[int | float]):
    """A count or a fraction: an integer >= 1, or a number with a point in (0, 1] (Lightning's batch limits)."""

    name = "limit"
    numeric = True

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number: int | float = value
        else:
            text = str(value).strip()
            try:
                number = float(text) if "." in text or "e" in text.lower() else int(text)
            except ValueError:
                self.fail(f"'{value}' is neither an integer nor a fraction", param, ctx)
        rule = COUNT if isinstance(number, int) else IOU
        try:
            rule.check("", number)
        except InputError:
            self.fail(f"{value} is neither an integer >= 1 nor a fraction in (0, 1]", param, ctx)
        return number


IMGSZ = ImgszType()
SIZES = SizeListType()
LIMIT = LimitType()


# ----------------------------------------------------------------------------- backends

def check_backends(value: str, several: bool) -> tuple[str, ...]:
    """The backend names of `value` ('onnxruntime' or, when `several`, 'onnxruntime,openvino'), each
    known to the capability table; InputError otherwise."""
    from runtimes.capabilities import get
    from runtimes.errors import EdgebenchError

    names = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    if not names:
        raise InputError("expected a backend name")
    if len(names) > 1 and not several:
        raise InputError(f"takes one backend, got '{value}' (run and sweep take a comma list)")
    for name in names:
        try:
            get(name)
        except EdgebenchError as exc:
            raise InputError(str(exc)) from None
    return names


class BackendType(click.ParamType[str]):
    """One backend name from the capability table (predict, val)."""

    name = "backend"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_backends(str(value), several=False)[0]
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class BackendListType(click.ParamType[tuple[str, ...]]):
    """One backend name or a comma list of them, each from the capability table (run, sweep)."""

    name = "backend[,backend]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return check_backends(str(value), several=True)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


BACKEND = BackendType()
BACKENDS = BackendListType()


# ----------------------------------------------------------------------------- threads

def threads_warning(threads: int | None) -> str | None:
    """The CLI's one-line warning when `threads` exceeds the cores this process may use, else None."""
    from edge_sdk.host import threads_excess

    excess = threads_excess(threads)
    return f"warning: --threads {excess}" if excess else None


def warn_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """click callback: pass the value through; above the host's cores, one `warning:` line on stderr,
    and the library's ThreadsWarning for the same value silenced for the rest of the command."""
    warning = threads_warning(value)
    if warning and not ctx.resilient_parsing:
        from edge_sdk.host import ThreadsWarning

        click.echo(warning, err=True)
        ctx.with_resource(warnings.catch_warnings())  # restored when the command's context closes
        warnings.simplefilter("ignore", ThreadsWarning)
    return value


def threads_option(help_text: str) -> Callable[[F], F]:
    """`--threads N` (N >= 1, a warning above the host's cores)."""
    return click.option("--threads", type=THREADS.param_type(), default=None, callback=warn_threads,
                        help=f"{help_text} At most {MAX_THREADS}.")


# ----------------------------------------------------------------------------- the Python API

class RunOptionsLike(Protocol):
    """The fields of bench.sweep.run.RunOptions that the rules check."""

    precisions: tuple[str, ...] | None


def validate_run_options(opts: RunOptionsLike) -> None:
    """InputError for the first out-of-range field of a RunOptions / SweepOptions (RUN_RULES, sizes,
    precision names), before anything is loaded or written; a ThreadsWarning (edge_sdk.host) when
    threads exceeds this host's usable cores."""
    for name, (option, rule) in RUN_RULES.items():
        rule.check(f"{name} ({option})", getattr(opts, name, None))
    for size in getattr(opts, "imgsz", None) or ():
        check_imgsz(size)
    requested_precisions(opts.precisions)
    backends = getattr(opts, "backends", None)
    if backends:
        check_backends(",".join(backends), several=True)
    from edge_sdk.host import warn_excess_threads

    stacklevel = _warning_stacklevel()
    if stacklevel is not None:
        warn_excess_threads(getattr(opts, "threads", None), stacklevel)


#: bench/ itself: a warning from validate_run_options points at the first frame outside it.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _warning_stacklevel() -> int | None:
    """validate_run_options's ThreadsWarning stacklevel (1: validate_run_options): the first frame
    outside bench/, i.e. the user's run() or sweep() call (Python 3.12's skip_file_prefixes). None when
    an outer bench frame validates too (sweep() validates, then its prepare() again): that one warned."""
    frame: FrameType | None = sys._getframe(2)  # validate_run_options's caller
    level, outermost = 2, 2
    while frame is not None and frame.f_code.co_filename.startswith(_BENCH_DIR):
        if validate_run_options.__name__ in frame.f_code.co_names:
            outermost = level
        frame, level = frame.f_back, level + 1
    return level if outermost == 2 else None


def requested_precisions(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """The canonical (lower-case) precision names of `names`, in order, each once; None when not given
    (the profile's); PrecisionError for an unknown name, InputError for an empty list."""
    from runtimes.precision import parse_precisions

    if names is None:
        return None
    canonical = tuple(p.value for p in parse_precisions(list(names)))
    if not canonical:
        raise InputError("--precisions is empty (give a comma list, e.g. fp32,int8)")
    return canonical


class PrecisionListType(click.ParamType[tuple[str, ...]]):
    """A comma list of precision names, canonical and each once (e.g. 'FP32,int8,fp32' -> fp32, int8)."""

    name = "precisions"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        from runtimes.errors import EdgebenchError

        try:
            return requested_precisions(str(value).split(",")) or ()
        except EdgebenchError as exc:
            self.fail(str(exc), param, ctx)


PRECISIONS = PrecisionListType()


# ----------------------------------------------------------------------------- deprecated spellings

class DeprecatedOption(click.Option):
    """A hidden old spelling of an option: its value goes to `dest` (the new option's parameter) with
    one `note: --old is deprecated; use --new` line on stderr. Needs `cls=Command` on the command."""

    def __init__(self, param_decls: Sequence[str], *, dest: str, new: str, **attrs: Any) -> None:
        super().__init__(param_decls, hidden=True, **attrs)
        self.dest, self.new = dest, new

    @property
    def old(self) -> str:
        """The old spelling, e.g. '--max-eval-images'."""
        return max(self.opts, key=len)


def deprecated(old: str, dest: str, new: str, **attrs: Any) -> Callable[[F], F]:
    """Declare `old` as a hidden, deprecated spelling of option `new` (parameter name `dest`)."""
    name = "deprecated_" + old.lstrip("-").replace("-", "_")
    return click.option(old, name, cls=DeprecatedOption, dest=dest, new=new, **attrs)


def notice(text: str) -> None:
    """One `note:` line on stderr."""
    click.echo(f"note: {text}", err=True)


class Command(click.Command):
    """A click command whose DeprecatedOption values are moved onto the new options after parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.params:
            if isinstance(param, DeprecatedOption) and param.name:
                _apply_deprecated(ctx, param)
        return rest


def _apply_deprecated(ctx: click.Context, param: DeprecatedOption) -> None:
    value = ctx.params.pop(str(param.name), None)
    if ctx.get_parameter_source(str(param.name)) != ParameterSource.COMMANDLINE:
        return
    if ctx.get_parameter_source(param.dest) == ParameterSource.COMMANDLINE:
        raise click.UsageError(f"{param.old} and {param.new} are the same option; give only {param.new}")
    if not ctx.resilient_parsing:
        notice(f"{param.old} is deprecated; use {param.new}")
    ctx.params[param.dest] = value


def notice_if_given(text: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback printing `note: <text>` when its option is given on the command line (for an
    option whose meaning changed), passing the value through."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if param.name and given(ctx, param.name) and not ctx.resilient_parsing:
            notice(text)
        return value

    return callback


def given(ctx: click.Context, name: str) -> bool:
    """Whether parameter `name` was given on the command line."""
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def class_map_option() -> Callable[[F], F]:
    """`--class-map`, the same on run, sweep and val (bench.sweep.class_map parses it)."""
    return click.option(
        "--class-map", "class_map", default=None, metavar="MODEL=DATA[,...]|FILE.yaml",
        help="Score a data set whose classes differ from the model's through this map: model class = "
             "data set class pairs, by name or index (e.g. car=vehicle,person=pedestrian), or a YAML "
             "mapping file. Model classes left out are not scored; data set classes nobody maps to "
             "score AP 0.")
