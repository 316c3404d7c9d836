"""``sms-worker doctor``: is everything this worker needs configured and reachable?"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from worker.cli.common import BAD_INPUT, FAILURE, OK
from worker.cli.doctor_checks import run_checks
from worker.cli.doctor_results import FAIL, SKIP, CheckResult
from worker.cli.output import JSON, TABLE, echo_json, format_option, show

_STYLES = {FAIL: "bold red", SKIP: "yellow"}


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long each check may wait for an answer.",
)
@format_option(TABLE, JSON)
def doctor(timeout: float, output_format: str) -> None:
    """Check the configuration, the ledger, the broker, the throttle, the workers, the gateway.

    Each check prints OK or FAIL, and for a failure what is wrong and how to fix it:
    configuration (the SMS_* settings, each account's credentials), database (reachable),
    migrations (at this version's newest revision), broker (answers), throttle (the Redis the
    workers share: SMS_REDIS_URL, or a Redis broker; answers), workers (a running worker
    consumes each queue; they get up to --timeout to answer), gateway (reachable over
    TCP/TLS). A gateway that is the bundled simulator (it answers /_sim/config) also gets a
    signed test call, pullsendstatus, which sends no SMS; a real gateway only gets a
    connection. Nothing is changed. Exit status: 0 all passed, 2 the configuration is wrong,
    1 another check failed.

    \b
    Examples:
      sms-worker doctor
      sms-worker doctor --timeout 10                # a slow network
      sms-worker doctor --format json | jq '.checks[] | select(.status == "FAIL")'
      SMS_GATEWAY_URL=http://127.0.0.1:8080 sms-worker doctor    # against the simulator
    """
    results = run_checks(timeout)
    failures = [result for result in results if result.failed]
    if output_format == JSON:
        echo_json({"ok": not failures, "checks": [result.as_dict() for result in results]})
    else:
        show(_table(results))
        failed_count = len(failures)
        click.echo(
            f"{failed_count} of {len(results)} checks failed."
            if failed_count
            else f"All {len(results)} checks passed."
        )
    if any(result.bad_input for result in failures):
        raise click.exceptions.Exit(BAD_INPUT)
    raise click.exceptions.Exit(FAILURE if failures else OK)


def _table(results: list[CheckResult]) -> Table:
    table = Table(title="sms-worker doctor", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    table.add_column("Fix", overflow="fold")
    for result in results:
        style = _STYLES.get(result.status, "green")
        # Text, not markup: an error's words may hold brackets.
        table.add_row(
            result.name, Text(result.status, style), Text(result.detail), Text(result.fix or "-")
        )
    return table
