"""The ``sms-worker`` command: one group, a subcommand per job people do with the worker."""

from __future__ import annotations

import click

from worker import __version__
from worker.cli.accounts import accounts
from worker.cli.batch import batch
from worker.cli.demo import demo
from worker.cli.ledger import ledger
from worker.cli.migrate import migrate
from worker.cli.optout import optout
from worker.cli.receiver import receiver
from worker.cli.send import send
from worker.cli.simulator import simulator


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sms-worker")
def main() -> None:
    """Send SMS through Tencent Cloud's v5 API, reliably, and run its gateway simulator.

    \b
    Examples:
      sms-worker simulator --port 8080      # a local gateway for demos and CI
      sms-worker demo                       # a short tour against the simulator
      sms-worker send --to +8613788888888 --template 100001 --param 482913 --param 5 --wait
    """


main.add_command(simulator)
main.add_command(demo)
main.add_command(migrate)
main.add_command(send)
main.add_command(accounts)
main.add_command(ledger)
main.add_command(receiver)
main.add_command(batch)
main.add_command(optout)
