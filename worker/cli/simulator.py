"""``sms-worker simulator``: run the gateway simulator in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from worker.cli.common import (
    BAD_INPUT,
    FAILURE,
    current_settings,
    fail,
    listen_options,
    log_level_option,
)
from worker.runners.asgi import serve_forever
from worker.simulator.config import ConfigError, SimulatorConfig, load_config
from worker.simulator.control_auth import TOKEN_FILE_VARIABLE, TOKEN_VARIABLE
from worker.simulator.defaults import DEFAULT_SDKAPPID
from worker.simulator.server import SimulatorServer, SimulatorServerError
from worker.tokens import MAKE_TOKEN


def _read_secret(path: Path, what: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = type(exc).__name__
        fail(f"cannot read the {what} file {path}: {problem}", BAD_INPUT, cause=exc)
    if not secret:
        fail(f"the {what} file {path} is empty", BAD_INPUT)
    return secret


@click.command()
@listen_options(port=8080, host_example="to serve other machines")
@click.option(
    "--sdkappid",
    envvar="SMS_SDKAPPID",
    show_envvar=True,
    metavar="ID",
    help=f"SDK AppID of the (first) account. Default: {DEFAULT_SDKAPPID}. "
    "Example: --sdkappid 1400123456",
)
@click.option(
    "--appkey",
    envvar="SMS_APPKEY",
    show_envvar=True,
    metavar="KEY",
    help="AppKey that requests must be signed with. Default: the documented example key. "
    "Prefer --appkey-file: a key on the command line shows in the process list. "
    "Example: --appkey 5f03a35d00ee52a21327ab048186a2c4",
)
@click.option(
    "--appkey-file",
    envvar="SMS_APPKEY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the AppKey (whitespace around it is ignored). "
    "Example: --appkey-file secrets/sms_appkey",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="TOML file of accounts, signs, templates, limits, faults, scripts and reports; "
    "worker/simulator/example.toml documents every key. Example: --config sim.toml",
)
@click.option(
    "--callback-url",
    metavar="URL",
    help="Where delivery reports and replies are pushed. "
    "Example: --callback-url http://127.0.0.1:8000/sms/callback/SECRET",
)
@click.option(
    "--control-token",
    envvar=TOKEN_VARIABLE,
    show_envvar=True,
    metavar="TOKEN",
    help="Bearer token the control API (/_sim/) requires: Authorization: Bearer TOKEN. Needed "
    "when --host is not a loopback address. Prefer --control-token-file: a token on the "
    f"command line shows in the process list. Make one with: {MAKE_TOKEN}. "
    'Example: --control-token "$(cat secrets/sim_control_token)"',
)
@click.option(
    "--control-token-file",
    envvar=TOKEN_FILE_VARIABLE,
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the control token (whitespace around it is ignored). "
    "Example: --control-token-file secrets/sim_control_token",
)
@log_level_option
def simulator(
    host: str,
    port: int,
    sdkappid: str | None,
    appkey: str | None,
    appkey_file: Path | None,
    config_path: Path | None,
    callback_url: str | None,
    control_token: str | None,
    control_token_file: Path | None,
    log_level: str,
) -> None:
    """Run a local gateway that speaks Tencent Cloud's v5 SMS protocol.

    It checks signatures and content like the gateway, bills segments like the gateway, keeps a
    handset inbox and a request log, sends delivery reports, and injects faults on demand; see
    the control API under /_sim/ (GET /_sim/inbox, POST /_sim/script, PUT /_sim/faults, ...).
    Listening beyond loopback, the control API needs a token (--control-token-file); the
    gateway under /v5/ checks signatures as always. Its clock is real time plus
    SMS_CLOCK_OFFSET_SECONDS, like the worker's, until PUT /_sim/clock moves it.

    \b
    Examples:
      sms-worker simulator
      sms-worker simulator --port 9000 --config sim.toml
      SMS_APPKEY_FILE=appkey.txt sms-worker simulator --sdkappid 1400123456
      sms-worker simulator --callback-url http://127.0.0.1:8000/sms/callback/SECRET
      SMS_SIMULATOR_CONTROL_TOKEN_FILE=sim_token sms-worker simulator --host 0.0.0.0
    """
    if appkey is None and appkey_file is not None:
        appkey = _read_secret(appkey_file, "appkey")
    if control_token is not None and control_token_file is not None:
        fail(
            f"give the control token once: --control-token ({TOKEN_VARIABLE}) or "
            f"--control-token-file ({TOKEN_FILE_VARIABLE})",
            BAD_INPUT,
        )
    if control_token_file is not None:
        control_token = _read_secret(control_token_file, "control token")
    # The worker's simulated time, so that requests it signs are on time here too.
    offset = current_settings().clock_offset_seconds or None
    try:
        config = load_config(
            config_path,
            sdkappid=sdkappid,
            appkey=appkey,
            callback_url=callback_url,
            clock_offset_seconds=offset,
        )
        server = SimulatorServer(config, host=host, port=port, log_level=log_level,
                                 control_token=control_token)  # fmt: skip
    except ConfigError as exc:
        fail(str(exc), BAD_INPUT, cause=exc)
    try:
        serve_forever(server, on_started=_announce)
    except SimulatorServerError as exc:
        fail(f"{exc} (is the port already in use?)", FAILURE, cause=exc)


def _announce(server: SimulatorServer) -> None:
    config: SimulatorConfig = server.app.config
    accounts = ", ".join(account.sdkappid for account in config.accounts)
    click.echo(f"sms-worker simulator: listening on {server.url} (sdkappid {accounts})")
    click.echo(f"  gateway:  {server.url}/v5/tlssmssvr/{{api}}?sdkappid=...&random=...")
    guarded = " (Authorization: Bearer <control token>)" if server.control_token else ""
    click.echo(f"  control:  {server.url}/_sim/inbox, /_sim/requests, /_sim/stats{guarded}")
    if config.clock_offset_seconds:
        click.echo(f"  clock:    real time + {config.clock_offset_seconds:g} s")
    click.echo("  stop with Ctrl-C")
