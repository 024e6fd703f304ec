"""Run one configuration in a child process: a crash, hang or error becomes a result, not a dead run."""
from __future__ import annotations

import multiprocessing as mp
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runtimes.errors import EdgebenchError, HardwareUnavailableError
from runtimes.precision import PrecisionUnsupportedError


@dataclass
class ChildOutcome:
    """What a child returned, or why it did not: status is ok, skipped (the configuration cannot run on
    this host: a precision it cannot honour, a device it does not have), error, crashed or timeout."""

    status: str
    value: Any = None
    error: str | None = None


#: What a child sends back: (status, fn's return value or None, error text or None).
_Message = tuple[str, Any, str | None]


class _Sender(Protocol):
    """The child's end of the pipe (a multiprocessing Connection): send one message, then close."""

    def send(self, obj: _Message, /) -> None: ...

    def close(self) -> None: ...


def _child(conn: _Sender, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        conn.send(("ok", fn(*args, **kwargs), None))
    except (PrecisionUnsupportedError, HardwareUnavailableError) as exc:
        conn.send(("skipped", None, str(exc)))
    except EdgebenchError as exc:
        conn.send(("error", None, str(exc)))
    except Exception as exc:  # reported to the parent as a failed row, with its traceback tail
        tail = traceback.format_exc().strip().splitlines()[-3:]
        conn.send(("error", None, f"{type(exc).__name__}: {exc} | " + " / ".join(tail)))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
                 **kwargs: Any) -> ChildOutcome:
    """Call fn(*args, **kwargs) in a fresh spawned process; fn and its arguments must pickle."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(timeout_s):
            status, value, error = parent.recv()
            proc.join(10)
            return ChildOutcome(status, value, error)
        if proc.is_alive():
            return ChildOutcome("timeout", error=f"timed out after {timeout_s:g} s")
        proc.join()
        return ChildOutcome("crashed", error=_describe_exit(proc.exitcode))
    except EOFError:
        proc.join()
        return ChildOutcome("crashed", error=_describe_exit(proc.exitcode))
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"child process killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"child process killed by signal {-code}"
    return f"child process exited with code {code} without a result"
