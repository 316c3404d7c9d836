"""``sms-worker demo``: a short tour of the product against the bundled gateway simulator."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from worker.simulator.defaults import DEFAULT_SDKAPPID, DOCUMENTED_EXAMPLE_APPKEY
from worker.simulator.server import SimulatorServer
from worker.tencent import Exchange, SmsClient, Template, parse_phone
from worker.tencent.codes import classify_result

# What the tour sends: (what it shows, numbers, template id, params, sign).
TOUR: tuple[tuple[str, tuple[str, ...], int, tuple[str, ...], str | None], ...] = (
    ("code", ("+8613788888888",), 100001, ("482913", "5"), "腾讯云"),
    ("long notice", ("+8613788888889",), 100003,
     ("张先生", "20240501001", "5月1日", "顺丰速运", "SF1234567890"), "腾讯云"),
    ("international", ("+447911123456",), 100004, ("731204", "10"), None),
    ("group", ("+8613700000001", "+8613700000002", "+8613700000003"), 19,
     ("验证码", "1234", "4"), "腾讯云"),
)
# Blacklisted at the simulator: the group's detail refuses it (1015), the others go out.
BAD_GROUP_MEMBER = "+8613700000002"


@click.command()
def demo() -> None:
    """Run a short tour against the bundled simulator and print what the gateway answered.

    It starts the simulator on a free loopback port, sends a verification code, a long
    notification billed as 2 segments, an international message and a group send in which one
    number is refused, prints every answer, then stops the simulator.

    \b
    Example:
      sms-worker demo
    """
    console = Console()
    with SimulatorServer(blacklist=(BAD_GROUP_MEMBER,)) as server:
        console.print(f"Gateway simulator listening on [bold]{server.url}[/]")
        rows: list[tuple[str, Exchange]] = []
        with SmsClient(DEFAULT_SDKAPPID, DOCUMENTED_EXAMPLE_APPKEY, server.url) as client:
            for label, numbers, tpl_id, params, sign in TOUR:
                phones = [parse_phone(number) for number in numbers]
                content = Template(tpl_id, params, sign)
                if len(phones) == 1:
                    exchange = client.send(phones[0], content)
                else:
                    exchange = client.send_group(phones, content)
                rows.append((label, exchange))
        console.print(answers_table(rows))
        console.print(inbox_table(server))


def answers_table(rows: list[tuple[str, Exchange]]) -> Table:
    table = Table(title="What the gateway answered", title_justify="left")
    for column in ("send", "api", "number", "result", "fee", "sid", "outcome"):
        table.add_column(column, overflow="fold")
    for label, exchange in rows:
        for result in exchange.results():
            answer = f"{result.result} {result.errmsg}" if result.result else "0"
            table.add_row(
                label, exchange.request.api, f"+{result.nationcode}{result.mobile}", answer,
                str(result.fee), result.sid or "-", classify_result(result.result),
            )  # fmt: skip
    return table


def inbox_table(server: SimulatorServer) -> Table:
    table = Table(title="What the handsets received", title_justify="left")
    for column in ("number", "fee", "text"):
        table.add_column(column)
    for message in server.control.inbox():
        table.add_row(f"+{message.nationcode}{message.mobile}", str(message.fee), message.text)
    return table
