"""Option rules shared by the CLI and the Python API: ranges, the stride rule, the threads warning,
and the one mechanism for deprecated option spellings.

A `Rule` is written once and used twice: as the click type of a CLI option (a bad value is one
`error:` line and exit 2 before anything loads) and by `validate_run_options` (a typed InputError for
RunOptions / SweepOptions built in Python).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
        """The click type enforcing this rule."""
        if self.integer:
            return click.IntRange(min=_int(self.low), max=_int(self.high))
        return click.FloatRange(min=self.low, max=self.high, min_open=self.low_open)

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
        if math.isnan(v):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return self.high is None or v <= self.high


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


COUNT = Rule(integer=True, low=1)  #: iterations, images, frames, threads, batch, max_det
NON_NEGATIVE = Rule(integer=True, low=0)  #: warm-up iterations, seeds, workers, epochs of patience
CONF = Rule(integer=False, low=0.0, high=1.0)  #: confidence thresholds, probabilities, fractions
IOU = Rule(integer=False, low=0.0, high=1.0, low_open=True)  #: NMS IoU
SECONDS = Rule(integer=False, low=0.0)  #: durations where 0 means none
POSITIVE_SECONDS = Rule(integer=False, low=0.0, low_open=True)  #: timeouts, windows
POSITIVE = Rule(integer=False, low=0.0, low_open=True)  #: learning rates

#: RunOptions / SweepOptions field -> its rule (validate_run_options).
RUN_RULES: dict[str, Rule] = {
    "threads": COUNT, "warmup": NON_NEGATIVE, "min_iterations": COUNT, "min_duration_s": SECONDS,
    "max_eval_images": COUNT, "timeout_s": POSITIVE_SECONDS, "reference_conf": CONF,
    "duration_s": SECONDS, "window_s": POSITIVE_SECONDS,
}


def check_imgsz(value: Any, name: str = "imgsz") -> int:
    """`value` as an input size: a positive integer multiple of the model stride, else InputError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 or value % STRIDE:
        raise InputError(f"{name} {value!r}: an input size must be a positive multiple of {STRIDE}")
    return int(value)


class ImgszType(click.types.IntParamType):
    """One input size: a positive integer multiple of the stride."""

    name = "imgsz"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = super().convert(value, param, ctx)
        try:
            return check_imgsz(number, "")
        except InputError:
            self.fail(f"{number} is not a positive multiple of {STRIDE}", param, ctx)


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
                self.fail(f"{part} is not a positive multiple of {STRIDE}", param, ctx)
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


# ----------------------------------------------------------------------------- threads

def threads_warning(threads: int | None) -> str | None:
    """A one-line warning when `threads` exceeds the cores this process may use, else None."""
    if threads is None:
        return None
    from edge_sdk.host import host_facts

    facts = host_facts()
    usable = int(facts.get("usable_cores") or facts.get("logical_cores") or 1)
    if threads <= usable:
        return None
    return (f"warning: --threads {threads} exceeds the {usable} cores this host lets us use "
            f"({facts.get('physical_cores')} physical): the engines' threads will compete")


def warn_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """click callback: pass the value through, warning on stderr when it exceeds the host's cores."""
    warning = threads_warning(value)
    if warning and not ctx.resilient_parsing:
        click.echo(warning, err=True)
    return value


def threads_option(help_text: str) -> Callable[[F], F]:
    """`--threads N` (N >= 1, a warning above the host's cores)."""
    return click.option("--threads", type=COUNT.param_type(), default=None, callback=warn_threads,
                        help=help_text)


# ----------------------------------------------------------------------------- the Python API

class RunOptionsLike(Protocol):
    """The fields of bench.sweep.run.RunOptions that the rules check."""

    precisions: tuple[str, ...] | None


def validate_run_options(opts: RunOptionsLike) -> None:
    """InputError for the first out-of-range field of a RunOptions / SweepOptions (RUN_RULES, sizes,
    precision names), before anything is loaded or written."""
    from runtimes.precision import parse_precisions

    for name, rule in RUN_RULES.items():
        rule.check(name, getattr(opts, name, None))
    for size in getattr(opts, "imgsz", None) or ():
        check_imgsz(size)
    parse_precisions(opts.precisions or ())


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
