"""The `edgebench` command line: thin click commands over library calls.

Every EdgebenchError becomes one line on stderr and exit code 2, with no traceback.
"""
from __future__ import annotations

import importlib
import sys

import click

from runtimes.errors import EdgebenchError

#: command name -> module in bench.commands exposing a click command named `command`
COMMANDS = {
    "run": "run_cmd",
    "map": "map_cmd",
    "predict": "predict_cmd",
    "env": "env_cmd",
    "profiles": "profiles_cmd",
    "data": "data_cmd",
    "train": "train_cmd",
    "val": "val_cmd",
    "export": "export_cmd",
    "compare": "compare_cmd",
    "sweep": "sweep_cmd",
    "quantize": "quantize_cmd",
    "qat": "qat_cmd",
    "emulate": "emulate_cmd",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"bench.commands.{module}").command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgebench")
def cli() -> None:
    """edgebench: deploy and benchmark YOLO-family detectors on edge devices.

    Start with `edgebench run` (bundled model, host profile), `edgebench env` (what this
    host can run) and `edgebench profiles list`.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning typed errors into one line and exit code 2."""
    try:
        code = cli.main(args=argv, standalone_mode=False)  # returns the code of a raised click Exit
    except EdgebenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # bad option values, unknown options: one line like ours
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
