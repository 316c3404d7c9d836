"""The ``sms-worker`` command: one group, a subcommand per job people do with the worker."""

from __future__ import annotations

import click

from worker import __version__
from worker.cli.common import DEBUG_KEY, PROGRAM, check_settings
from worker.cli.sections import SectionedGroup

# Who uses what: the help lists the commands in these sections, in this order.
SECTIONS = (
    ("Sending", ("send", "batch", "optout")),
    ("Finance", ("ledger",)),
    ("Operations", ("accounts", "doctor", "migrate", "receiver", "simulator", "demo")),
)

# Each command's module, imported only when that command runs or help lists it.
COMMANDS = {
    name: f"worker.cli.{name}:{name}"
    for name in ("send", "batch", "optout", "ledger", "accounts", "doctor", "migrate",
                 "receiver", "simulator", "demo")
}  # fmt: skip

# Settings each command does not read first: doctor shows a bad one as a row of its report; the
# demo reads the environment without a .env file (one it did not write must not change it).
READS_SETTINGS_ITSELF = frozenset({"doctor", "demo"})


def _prepare(command: click.Command) -> None:
    # Every command answers a bad SMS_* setting with one line naming it, and exit code 2.
    check_settings(command, first=command.name not in READS_SETTINGS_ITSELF)


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG_KEY] = value
    return value


@click.group(
    name=PROGRAM,
    cls=SectionedGroup,
    sections=SECTIONS,
    lazy=COMMANDS,
    prepare=_prepare,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name=PROGRAM)
@click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_remember_debug,
    help="On an error, show its traceback above the one-line message.",
)
def main() -> None:
    """Send SMS through Tencent Cloud's v5 API, reliably, and run its gateway simulator.

    Configuration comes from SMS_* environment variables (and a .env file). Exit codes: 0 ok,
    2 bad input (an option, an argument or a setting), 1 failure. Errors are one line on
    stderr; --debug adds the traceback.

    \b
    Examples:
      sms-worker doctor                     # is everything this worker needs reachable?
      sms-worker simulator --port 8080      # a local gateway for demos and CI
      sms-worker demo                       # a short tour against the simulator
      sms-worker send --to +8613788888888 --template 100001 --param 482913 --param 5 --wait
      sms-worker --debug accounts           # a traceback with the error, if there is one
    """
