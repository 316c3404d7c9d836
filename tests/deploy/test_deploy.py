"""The deployment kit's roles: docker-compose.yml and the Procfile (the image: test_deploy_image).

Docker is not needed: the files are read and held against the code they start. Both files run the
same roles with the same commands; every command, subcommand and option exists; the queues are
worker.celery.routing's, each with a consumer; beat runs once; every SMS_* name is one the programs
read
and the compose environment is a working configuration; dependencies wait on health checks that
probe what the service serves. Hardening: every secret is a file mounted only where it is used
and never an environment variable; nothing is published beyond loopback; every service drops its
capabilities and privileges on a read-only root; images are pinned; Flower needs a login. Then
each Procfile command runs with --help, and honcho runs the release.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import requests
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.celery import celery as celery_cli
from honcho.environ import parse_procfile

from worker.celery.routing import QUEUE_MARKETING, QUEUE_TRANSACTIONAL, QUEUES
from worker.cli import main as sms_worker_cli
from worker.config import Settings, load_settings
from worker.ledger import migrate as migrations
from worker.ledger.db import make_engine, session_factory
from worker.receiver import AsgiServer, make_receiver_app
from worker.simulator.control_auth import HEALTH_PATH
from worker.simulator.server import SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROCFILE: dict[str, str] = dict(parse_procfile((ROOT / "Procfile").read_text("utf-8")).processes)

# Heroku's name for the one-shot run before a release; compose names it for what it does.
SERVICE_OF_ROLE = {"release": "migrate"}
# Options whose values may differ: a container listens on all its interfaces, a laptop on loopback.
LOCAL_VALUES = {"--host"}
PROGRAMS: dict[str, click.Group] = {"celery": celery_cli, "sms-worker": sms_worker_cli}
EXAMPLE_APPKEY = "5f03a35d00ee52a21327ab048186a2c4"
EXAMPLE_TOKEN = "Zq3vX8pL1mR7tY2wK9dF4hJ6"  # a stand-in for the operator's own
# Stand-ins for the operator's secret files, by compose secret name.
SECRET_EXAMPLES = {
    "sms_appkey": EXAMPLE_APPKEY,
    "sms_database_url": "postgresql://sms:example-password@postgres:5432/sms\n",
    "sms_receiver_token": EXAMPLE_TOKEN,
}
# Stand-ins for what compose requires from the operator (${NAME:?why}), if anything.
REQUIRED_VALUES: dict[str, str] = {}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
# Names of settings that hold a secret: only ever a *_FILE naming a mounted secret file.
SECRET_NAME = re.compile(r"PASSWORD|APPKEY|TOKEN|SECRET|AUTH|DATABASE_URL")
SECRETS_DIR = "/run/secrets/"


# --- reading the files -----------------------------------------------------------------------


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def built_services() -> dict[str, dict[str, Any]]:
    """The services that run our image (the others run images of their own)."""
    return {name: service for name, service in SERVICES.items() if "build" in service}


def commands() -> dict[str, list[str]]:
    """Every command line of ours, by where it is: 'Procfile:role' or 'compose:service'."""
    found = {f"Procfile:{role}": argv(command) for role, command in PROCFILE.items()}
    found |= {f"compose:{name}": argv(s["command"]) for name, s in built_services().items()}
    return found


def option_value(args: list[str], *names: str) -> str | None:
    for index, token in enumerate(args):
        for name in names:
            if token == name:
                return args[index + 1]
            if token.startswith(f"{name}="):
                return token.split("=", 1)[1]
    return None


def subcommand(args: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """``args`` of one of our programs: (its subcommand, the group's options, the subcommand's)."""
    assert args[0] in PROGRAMS, f"{args[0]!r} is not one of {sorted(PROGRAMS)}"
    group = PROGRAMS[args[0]]
    takes_value = {
        name
        for param in group.params
        if isinstance(param, click.Option) and not param.is_flag
        for name in param.opts
    }
    index = 1
    while args[index].startswith("-"):
        index += 1 if "=" in args[index] or args[index] not in takes_value else 2
    name = args[index]
    command = group.get_command(click.Context(group), name)  # sms-worker loads it on demand
    assert command is not None, f"{args[0]} has no command {name!r}"
    return command, args[1:index], args[index + 1 :]


def unknown_options(command: click.Command, args: list[str]) -> set[str]:
    known = {"--help"} | {
        name
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }
    return {token.split("=", 1)[0] for token in args if token.startswith("-")} - known


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {key: str(value) for key, value in env.items()}


def interpolate(text: str) -> str:
    """``text`` as compose hands it on, with defaults taken and the operator's values stood in."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        if op.endswith("-"):
            return arg
        assert op.endswith("?"), f"${{{name}}} has neither a default nor an error message"
        return REQUIRED_VALUES[name]

    return INTERPOLATION.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def healthcheck(name: str) -> str:
    test = SERVICES[name]["healthcheck"]["test"]
    return " ".join(test[1:]) if test[0] in ("CMD", "CMD-SHELL") else str(test)


def runs_celery(args: list[str], name: str) -> bool:
    return args[0] == "celery" and subcommand(args)[0].name == name


def workers(where: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: args for key, args in where.items() if runs_celery(args, "worker")}


def queues_of(args: list[str]) -> list[str]:
    value = option_value(args, "-Q", "--queues")
    assert value, f"{shlex.join(args)} names no queues"
    return value.split(",")


# --- roles and commands ----------------------------------------------------------------------


def test_every_role_runs_in_both_files() -> None:
    roles = {SERVICE_OF_ROLE.get(role, role) for role in PROCFILE}
    assert roles == set(built_services())


def test_each_role_has_the_same_command_in_both_files() -> None:
    def comparable(args: list[str]) -> list[str]:
        return [
            "VALUE" if index and args[index - 1] in LOCAL_VALUES else token
            for index, token in enumerate(args)
        ]

    for role, command in PROCFILE.items():
        service = SERVICES[SERVICE_OF_ROLE.get(role, role)]
        assert comparable(argv(command)) == comparable(argv(service["command"])), role


@pytest.mark.parametrize("where", sorted(commands()))
def test_command_starts_a_command_that_exists_with_options_it_has(where: str) -> None:
    args = commands()[where]
    command, group_options, options = subcommand(args)
    assert not unknown_options(PROGRAMS[args[0]], group_options)
    assert not unknown_options(command, options), where
    if args[0] == "celery":
        assert option_value(group_options, "-A", "--app") == "worker", where


def test_celery_dash_a_worker_finds_the_app_with_the_routing_queues() -> None:
    app = find_app("worker")
    assert isinstance(app, Celery)
    assert {queue.name for queue in app.conf.task_queues} == set(QUEUES)


def test_procfile_is_what_honcho_reads() -> None:
    lines = [line for line in (ROOT / "Procfile").read_text("utf-8").splitlines() if line.strip()]
    entries = [line for line in lines if not line.startswith("#")]
    assert len(entries) == len(PROCFILE), "a line honcho would skip is not a comment"


# --- queues and beat ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["Procfile", "compose"])
def test_workers_consume_every_queue_and_only_known_ones(source: str) -> None:
    found = workers({k: a for k, a in commands().items() if k.startswith(f"{source}:")})
    consumed = [queue for args in found.values() for queue in queues_of(args)]
    assert sorted(consumed) == sorted(QUEUES), "each queue has exactly one kind of worker"
    for args in found.values():
        queues = queues_of(args)
        # Marketing never delays a login code: its chunks have a worker of their own.
        assert not (QUEUE_MARKETING in queues and QUEUE_TRANSACTIONAL in queues)


def test_beat_runs_exactly_once_in_each_file() -> None:
    for source in ("Procfile", "compose"):
        mine = [a for k, a in commands().items() if k.startswith(f"{source}:")]
        beats = [args for args in mine if runs_celery(args, "beat")]
        embedded = [a for a in mine if "-B" in a or "--beat" in a]
        assert len(beats) == 1 and not embedded, source


# --- configuration -----------------------------------------------------------------------------


def command_envvars(command: click.Command) -> set[str]:
    """The variables ``command`` (and its subcommands) read through its options."""
    found = {
        name
        for param in command.params
        if isinstance(param, click.Option) and param.envvar
        for name in ([param.envvar] if isinstance(param.envvar, str) else param.envvar)
    }
    for sub in getattr(command, "commands", {}).values():
        found |= command_envvars(sub)
    return found


def test_every_sms_name_is_one_the_configuration_reads() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    read = {
        str(field.validation_alias or field.alias or f"{prefix}{name}").upper()
        for name, field in Settings.model_fields.items()
    } | command_envvars(sms_worker_cli)
    assert "SMS_GATEWAY_URL" in read  # the names are found, not an empty set
    for path in ("docker-compose.yml", "Procfile"):
        named = set(re.findall(r"\bSMS_[A-Z0-9_]+", (ROOT / path).read_text("utf-8")))
        assert named <= read, f"{path}: {sorted(named - read)} are not settings"


@pytest.mark.parametrize("name", sorted(set(built_services()) - {"simulator"}))
def test_compose_environment_is_a_working_configuration(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[name]
    for key in [key for key in os.environ if key.startswith("SMS_")]:
        monkeypatch.delenv(key)
    for key, value in environment(service).items():
        if value.startswith(SECRETS_DIR):
            secret = value.removeprefix(SECRETS_DIR)
            assert secret in service.get("secrets", []), f"{name} does not mount {secret}"
            value = str(tmp_path / secret)
            Path(value).write_text(SECRET_EXAMPLES[secret], encoding="utf-8")
        monkeypatch.setenv(key, interpolate(value))
    monkeypatch.chdir(tmp_path)  # no .env
    settings = load_settings(env_file=None)
    if "sms_appkey" in service.get("secrets", []):
        assert settings.account().appkey.get_secret_value() == EXAMPLE_APPKEY
    assert settings.database_url == SECRET_EXAMPLES["sms_database_url"].strip()
    assert urlsplit(settings.database_url).hostname in SERVICES
    assert urlsplit(settings.broker_url).hostname in SERVICES
    if argv(service["command"])[:2] == ["sms-worker", "receiver"]:
        assert settings.receiver_token is not None
        assert settings.receiver_token.get_secret_value() == EXAMPLE_TOKEN


def test_gateway_is_the_simulator_unless_the_environment_names_another() -> None:
    worker_env = environment(SERVICES["worker_transactional"])
    match = INTERPOLATION.fullmatch(worker_env["SMS_GATEWAY_URL"])
    assert match and match["name"] == "SMS_GATEWAY_URL" and match["op"] == ":-"
    default = urlsplit(match["arg"])
    simulator = argv(SERVICES["simulator"]["command"])
    assert simulator[:2] == ["sms-worker", "simulator"] and default.hostname == "simulator"
    assert default.port == int(option_value(simulator, "--port") or 0)
    # The simulator checks signatures with the account the workers sign with.
    sim_env = environment(SERVICES["simulator"])
    for key in ("SMS_SDKAPPID", "SMS_APPKEY_FILE"):
        assert sim_env[key] == worker_env[key]


def secrets_used(service: dict[str, Any]) -> set[str]:
    """The secret files the service's environment or command names."""
    text = " ".join([*environment(service).values(), *argv(service.get("command", []))])
    return set(re.findall(rf"{SECRETS_DIR}(\w+)", text))


def test_secrets_are_files_from_outside_the_image_and_never_variables() -> None:
    defined = COMPOSE.get("secrets", {})
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} holds a secret in the environment"
                secret = value.removeprefix(SECRETS_DIR)
                assert value.startswith(SECRETS_DIR) and secret in service["secrets"], key
                assert set(defined[secret]) == {"file"}, secret
    # Not from the operator's environment either: compose would copy it into a variable.
    text = (ROOT / "docker-compose.yml").read_text("utf-8")
    interpolated = {match["name"] for match in INTERPOLATION.finditer(text)}
    assert not {n for n in interpolated if SECRET_NAME.search(n)}, "a secret from a variable"
    for where, args in commands().items():
        assert not {"--appkey", "--token", "--control-token"} & set(args), (
            f"{where}: a secret in the process list"
        )


def test_each_service_mounts_exactly_the_secrets_it_uses() -> None:
    for name, service in SERVICES.items():
        assert set(service.get("secrets", [])) == secrets_used(service), name
    # The appkey signs requests (workers) and checks them (the simulator): no one else has it.
    holders = {name for name, s in SERVICES.items() if "sms_appkey" in s.get("secrets", [])}
    signing = {name for name, args in commands().items() if runs_celery(args, "worker")} | {
        name for name, args in commands().items() if args[:2] == ["sms-worker", "simulator"]
    }
    assert holders == {where.removeprefix("compose:") for where in signing if "compose:" in where}


def test_the_ledger_password_is_in_the_ledger_url_file_only() -> None:
    postgres = environment(SERVICES["postgres"])
    assert postgres["POSTGRES_PASSWORD_FILE"] == f"{SECRETS_DIR}postgres_password"
    for name, service in SERVICES.items():
        env = environment(service)
        assert "PGPASSWORD" not in env and "SMS_DATABASE_URL" not in env, name
        if name in built_services() and name != "simulator":
            assert env["SMS_DATABASE_URL_FILE"] == f"{SECRETS_DIR}sms_database_url", name


# --- exposure and hardening --------------------------------------------------------------------

LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}


def published_host_addresses(service: dict[str, Any]) -> list[str]:
    """The host address each published port binds ('' for every interface)."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append(str(port.get("host_ip", "")))
            continue
        parts = str(port).rsplit(":", 2)
        found.append(parts[0] if len(parts) == 3 else "")
    return found


def test_nothing_is_published_beyond_this_machine() -> None:
    for name, service in SERVICES.items():
        assert service.get("network_mode") != "host", name
        for address in published_host_addresses(service):
            assert address in LOOPBACK, f"{name} publishes a port on {address or 'every interface'}"
    # The receiver speaks plain HTTP: only a TLS proxy on this host reaches it.
    assert published_host_addresses(SERVICES["receiver"]) in ([], ["127.0.0.1"])


# Capabilities a service may add back after dropping them all (none needs any).
ALLOWED_CAPABILITIES: dict[str, set[str]] = {}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_drops_privileges_on_a_read_only_root(name: str) -> None:
    service = SERVICES[name]
    assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert service.get("cap_drop") == ["ALL"], name
    assert set(service.get("cap_add", [])) <= ALLOWED_CAPABILITIES.get(name, set()), name
    assert service.get("privileged") is not True, name
    assert service.get("read_only") is True, name
    # Ours runs as the image's numeric user (test_deploy_image); the others as their image's own
    # user, so no entrypoint needs a capability to switch to it.
    if "build" not in service:
        assert service.get("user") not in (None, "root", "0", "0:0"), name


def test_beat_writes_its_schedule_to_a_tmpfs() -> None:
    beat = SERVICES["beat"]
    args = argv(beat["command"])
    schedule = option_value(args, "-s", "--schedule") or "celerybeat-schedule"
    # The final stage's working directory, where a relative schedule file goes.
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    folder = str(Path(workdirs[-1], schedule).parent)
    assert folder in beat.get("tmpfs", []), "beat's schedule file would be on a read-only root"


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# How many numbers name one release: PostgreSQL's are 16.4; the others' 7.2.5.
RELEASE_NUMBERS = {"postgres": 2}


def pinned(image: str) -> bool:
    """An exact release (``redis:7.2.5-alpine``, not ``redis:7-alpine``) or a digest."""
    if DIGEST.search(image):
        return True
    name, _, tag = image.partition(":")
    numbers = RELEASE_NUMBERS.get(name.rsplit("/", 1)[-1], 3)
    return bool(re.fullmatch(rf"\d+(\.\d+){{{numbers - 1}}}(-[\w.]+)?", tag))


def test_pinned_means_an_exact_release_or_a_digest() -> None:
    for exact in ("redis:7.2.5-alpine", "postgres:16.4-alpine", f"redis@sha256:{'a' * 64}"):
        assert pinned(exact), exact
    for floating in ("redis", "redis:latest", "redis:7", "redis:7-alpine", "redis:7.2-alpine",
                     "postgres:16-alpine", "mher/flower:2.0", "python:3.11-slim"):  # fmt: skip
        assert not pinned(floating), floating


def test_every_image_pulled_is_pinned() -> None:
    for name, service in SERVICES.items():
        if "build" not in service:
            assert pinned(service["image"]), f"{name}: {service['image']} floats"


# --- dependencies, health checks, restarts -----------------------------------------------------


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no health check"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
                assert argv(SERVICES[target]["command"]) == ["sms-worker", "migrate"]
    ledger_users = set(built_services()) - {"migrate", "simulator"}
    for name in ledger_users:
        rule = SERVICES[name]["depends_on"].get("migrate", {})
        assert rule.get("condition") == "service_completed_successfully", name


def test_restart_policies_restart_everything_but_the_one_shot() -> None:
    for name, service in SERVICES.items():
        expected = {"no"} if name == "migrate" else {"always", "unless-stopped", "on-failure"}
        assert service.get("restart") in expected, name


def test_worker_health_checks_ping_their_own_node() -> None:
    for name, args in workers({n: argv(s["command"]) for n, s in built_services().items()}).items():
        node = option_value(args, "-n", "--hostname")
        assert node and node.endswith("@%h"), name
        probe = argv(interpolate(healthcheck(name)))
        command, _, options = subcommand(probe)
        assert command.name == "inspect" and "ping" in options, name
        assert not unknown_options(command, options)
        assert option_value(probe, "-d", "--destination") == node.replace("%h", "$HOSTNAME")


def test_simulator_health_check_probes_a_route_it_serves_without_its_token() -> None:
    url = http_probe("simulator")
    assert url.path == HEALTH_PATH
    with SimulatorServer(control_token=EXAMPLE_TOKEN) as simulator:
        assert requests.get(simulator.url + url.path, timeout=30).status_code == 200
        # ...while the rest of the control API needs the token the service is given.
        assert requests.get(simulator.url + "/_sim/stats", timeout=30).status_code == 401


def test_simulator_listens_beyond_loopback_with_its_control_token_from_a_file() -> None:
    args = argv(SERVICES["simulator"]["command"])
    command, _, options = subcommand(args)
    assert option_value(options, "--host") == "0.0.0.0"
    token_file = next(
        p
        for p in command.params
        if isinstance(p, click.Option) and "--control-token-file" in p.opts
    )
    env = environment(SERVICES["simulator"])
    assert env[str(token_file.envvar)] == f"{SECRETS_DIR}sms_simulator_control_token"


def test_receiver_health_check_probes_a_route_it_serves(tmp_path: Path) -> None:
    url = http_probe("receiver")
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    app = make_receiver_app(session_factory(engine), EXAMPLE_TOKEN)
    try:
        with AsgiServer(app) as server:
            assert requests.get(server.url + url.path, timeout=30).status_code == 200
    finally:
        engine.dispose()


def http_probe(name: str) -> Any:
    """The URL the service's health check requests, checked to be the port it listens on."""
    found = re.search(r"http://127\.0\.0\.1:\d+/[^'\"\s]*", healthcheck(name))
    assert found, f"{name} has no HTTP health check"
    url = urlsplit(found[0])
    assert url.port == int(option_value(argv(SERVICES[name]["command"]), "--port") or 0)
    return url


# --- infrastructure ----------------------------------------------------------------------------


def test_redis_keeps_queued_work_and_never_evicts_it() -> None:
    redis = SERVICES["redis"]
    args = argv(redis["command"])
    assert option_value(args, "--appendonly") == "yes"
    assert option_value(args, "--maxmemory-policy") == "noeviction"
    assert any(volume.split(":")[0] in COMPOSE["volumes"] for volume in redis["volumes"])
    assert "redis-cli" in healthcheck("redis")


def test_postgres_keeps_the_ledger_in_a_named_volume() -> None:
    postgres = SERVICES["postgres"]
    assert any(volume.split(":")[0] in COMPOSE["volumes"] for volume in postgres["volumes"])
    assert "pg_isready" in healthcheck("postgres")


def flower_script() -> str:
    command = argv(SERVICES["flower"]["command"])
    assert command[:2] == ["sh", "-c"], "flower starts through a shell that reads its login"
    return command[2]


def flower_args() -> list[str]:
    """What the shell finally runs: the part after ``exec``."""
    run = [part.strip() for part in flower_script().split(";") if part.strip().startswith("exec ")]
    assert len(run) == 1
    return argv(run[0])[1:]


def test_flower_watches_the_workers_broker() -> None:
    args = flower_args()
    assert args[0] == "celery" and "flower" in args
    broker = option_value(args, "--broker", "-b")
    assert broker == environment(SERVICES["worker_marketing"])["SMS_BROKER_URL"]


def test_flower_needs_a_login_read_from_a_secret_file() -> None:
    flower = SERVICES["flower"]
    script = flower_script().replace("$$", "$")
    secret = f"{SECRETS_DIR}flower_basic_auth"
    assert flower.get("secrets") == ["flower_basic_auth"]
    # It refuses to start without a login, and sets Flower's own variable from the file.
    assert f"test -s {secret} ||" in script and "exit 2" in script
    assert f'export FLOWER_BASIC_AUTH="$(cat {secret})"' in script
    assert script.index("export FLOWER_BASIC_AUTH") < script.index("exec celery")
    assert "FLOWER_UNAUTHENTICATED_API" not in str(flower)
    assert not {"--basic-auth", "--basic_auth"} & {a.split("=")[0] for a in flower_args()}
    assert published_host_addresses(flower) == ["127.0.0.1"]


# --- running them ------------------------------------------------------------------------------


def clean_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """PATH to this interpreter's scripts, and only the SMS_* settings given."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **settings}


@pytest.mark.parametrize("role", sorted(PROCFILE))
def test_procfile_command_answers_help(role: str, tmp_path: Path) -> None:
    env = clean_environment(tmp_path, SMS_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}")
    done = subprocess.run(
        [*argv(PROCFILE[role]), "--help"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage:" in done.stdout


def test_honcho_runs_the_release_and_it_migrates_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    done = subprocess.run(
        [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-d", str(tmp_path),
         "--no-colour", "release"],
        cwd=tmp_path, env=clean_environment(tmp_path, SMS_DATABASE_URL=url),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert migrations.current(url) == migrations.head()
