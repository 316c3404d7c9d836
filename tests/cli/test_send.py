"""``sms-worker send`` against the running pipeline: a real worker, Redis and the simulator."""

from __future__ import annotations

import os
import uuid

import pytest
from click.testing import CliRunner, Result

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.simulator import CODE_PARAMS, LONG_PARAMS, SIGN, TPL_CODE, TPL_LONG
from worker.cli import main


@pytest.fixture
def run(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> CliRunnerCall:
    for name in [name for name in os.environ if name.startswith("SMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(pipeline.worker.folder)  # no .env there
    return CliRunnerCall(pipeline.environment)


class CliRunnerCall:
    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment

    def __call__(self, *args: str, **environment: str) -> Result:
        runner = CliRunner()
        return runner.invoke(main, ["send", *args], env={**self.environment, **environment})


def test_send_and_wait_prints_the_outcome_and_the_attempts(
    pipeline: Pipeline, run: CliRunnerCall
) -> None:
    phone = pipeline.new_phone()
    result = run("--to", phone.e164, "--template", str(TPL_LONG),
                 *(arg for param in LONG_PARAMS for arg in ("--param", param)),
                 "--sign", SIGN, "--wait", "--timeout", "30")  # fmt: skip

    assert result.exit_code == 0, result.output
    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    message_id = result.stdout.split()[0]
    message = pipeline.message(uuid.UUID(message_id))
    assert (message.status, message.sid, message.fee) == ("sent", received.sid, 2)
    lines = result.stdout.splitlines()
    assert any(line.split() == ["status", "sent"] for line in lines)
    assert any(line.split() == ["sid", received.sid] for line in lines)
    assert any(line.split() == ["fee", "2"] for line in lines)
    assert any(line.split() == ["result", "0"] for line in lines)
    assert "Attempts" in result.stdout and " ok " in result.stdout


def test_a_national_number_with_its_nationcode_and_a_key_sent_twice(
    pipeline: Pipeline, run: CliRunnerCall
) -> None:
    phone = pipeline.new_phone()
    args = ["--to", phone.mobile, "--nationcode", "86", "--template", str(TPL_CODE),
            "--param", CODE_PARAMS[0], "--param", CODE_PARAMS[1], "--sign", SIGN,
            "--kind", "verification", "--key", "signup-7"]  # fmt: skip

    first = run(*args, "--wait")
    again = run(*args)

    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    assert again.stdout.split()[0] == first.stdout.split()[0]
    assert "already enqueued" in again.stdout
    assert pipeline.count_messages() == 1
    assert len(pipeline.simulator.control.inbox(phone.mobile)) == 1


def test_a_message_that_fails_exits_1(pipeline: Pipeline, run: CliRunnerCall) -> None:
    phone = pipeline.new_phone()
    pipeline.simulator.control.script(phone.mobile, [1016])
    result = run("--to", phone.e164, "--template", str(TPL_LONG),
                 *(arg for param in LONG_PARAMS for arg in ("--param", param)),
                 "--sign", SIGN, "--wait", "--timeout", "30")  # fmt: skip

    assert result.exit_code == 1, result.output
    assert any(line.split() == ["status", "failed"] for line in result.stdout.splitlines())
    assert "1016" in result.stdout
    assert result.stderr.startswith("sms-worker send: failed")


@pytest.mark.parametrize(
    ("args", "environment", "names"),
    [
        (["--to", "13788888888", "--template", "19"], {}, "--to:"),
        (["--to", "+8613788888888", "--template", "19", "--text", "hi"], {}, "--template:"),
        (["--to", "+8613788888888", "--template", "100001", "--param", "12ab",
          "--kind", "verification"], {}, "--param #1:"),
        (["--to", "+8613788888888", "--text", "hi", "--account", "bank"], {}, "--account:"),
        (["--to", "+8613788888888", "--template", "19"], {"SMS_SEND_RATE": "-1"},
         "SMS_SEND_RATE:"),
    ],
    ids=["no-country-code", "template-and-text", "bad-code-param", "unknown-account",
         "bad-setting"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_naming_the_field(
    pipeline: Pipeline,
    run: CliRunnerCall,
    args: list[str],
    environment: dict[str, str],
    names: str,
) -> None:
    result = run(*args, **environment)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"sms-worker send: {names}")
    assert pipeline.count_messages() == 0
