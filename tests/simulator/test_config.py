"""The configuration: built-in defaults, the shipped example, flags, and clear refusals."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from worker.simulator.billing import render_template, rendered_message, segments
from worker.simulator.config import (
    Account,
    ConfigError,
    Limits,
    ReportSettings,
    SignSpec,
    SimulatorConfig,
    TemplateKind,
    TemplateSpec,
    config_from_mapping,
    default_config,
    load_config,
)
from worker.simulator.defaults import DOCUMENTED_EXAMPLE_APPKEY
from worker.simulator.faults import FaultKind, FaultSettings

EXAMPLE = resources.files("worker.simulator") / "example.toml"


def test_defaults_are_the_documented_demo_set() -> None:
    config = default_config()
    [account] = config.accounts
    assert (account.sdkappid, account.appkey) == ("1400000000", DOCUMENTED_EXAMPLE_APPKEY)
    assert config.default_sign == "腾讯云"
    templates = {t.id: t for t in config.templates}
    assert templates[19].text == "{1}为{2}，请于{3}分钟内填写。如非本人操作，请忽略本短信。"
    assert templates[19].kind is TemplateKind.NOTIFICATION and templates[19].param_count == 3
    kinds = {t.kind for t in config.templates if t.approved}
    assert kinds == {TemplateKind.VERIFICATION, TemplateKind.NOTIFICATION, TemplateKind.MARKETING}
    international = [t for t in config.templates if t.international]
    assert international and international[0].text.isascii()
    long = templates[100003]
    rendered = rendered_message(
        render_template(long.text, ["张先生", "20240501001", "5月1日", "顺丰速运", "SF1234567890"]),
        "腾讯云",
        domestic=True,
    )
    assert segments(rendered, domestic=True) == 2
    assert config.limits == Limits() and config.faults.rates == {} and not config.scripts


def test_the_example_file_loads_and_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    config = load_config(Path(str(EXAMPLE)))
    assert config.limits.blacklist == {"13700000009", "+8613700000008"}
    assert config.scripts["13700000001"][0].value == 1008
    assert "1400000001" in {a.sdkappid for a in config.accounts}
    keys = set(re.findall(r"^#?\s*\"?([a-z_0-9]+)\"?\s*=", text, re.MULTILINE))
    documented_classes: list[Any] = [
        SimulatorConfig,
        Account,
        SignSpec,
        TemplateSpec,
        Limits,
        ReportSettings,
        FaultSettings,
    ]
    fields = {f.name for cls in documented_classes for f in dataclasses.fields(cls)}
    fields -= {"accounts", "signs", "templates", "limits", "faults", "scripts", "reports", "rates"}
    fields |= {"include_defaults", "id"} | {kind.value for kind in FaultKind}
    assert fields - keys == set()
    tables = set(re.findall(r"^\[\[?([a-z.]+)\]\]?", text, re.MULTILINE))
    assert tables == {
        "accounts",
        "signs",
        "templates",
        "limits",
        "faults",
        "faults.rates",
        "scripts",
        "reports",
    }
    tomllib.loads(text)


def test_file_entries_add_to_or_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        '[[templates]]\nid = 19\ntext = "改过的{1}"\n[[signs]]\ntext = "新签名"\n', encoding="utf-8"
    )
    config = load_config(path)
    templates = {t.id: t for t in config.templates}
    assert templates[19].text == "改过的{1}" and 100001 in templates
    assert {s.text for s in config.signs} >= {"腾讯云", "新签名"}
    path.write_text(
        'include_defaults = false\n[[accounts]]\nsdkappid = "1"\nappkey = "k"\n', encoding="utf-8"
    )
    bare = load_config(path)
    assert bare.templates == () and bare.signs == () and bare.default_sign is None


def test_flags_override_the_first_account() -> None:
    config = load_config(
        None, sdkappid="1400123456", appkey="a" * 32, callback_url="http://127.0.0.1:9/cb"
    )
    assert [(a.sdkappid, a.appkey) for a in config.accounts] == [("1400123456", "a" * 32)]
    assert config.reports.callback_url == "http://127.0.0.1:9/cb"
    assert load_config(None, appkey="b" * 32).accounts[0].sdkappid == "1400000000"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"templates": [{"id": 5, "text": "{1}{3}"}]}, "templates"),
        ({"templates": [{"id": "5", "text": "x"}]}, "templates[6].id"),
        ({"templates": [{"id": 5, "text": "x", "kind": "spam"}]}, "kind"),
        ({"signs": [{"text": "【带括号】"}]}, "signs"),
        ({"accounts": [{"sdkappid": "abc", "appkey": "k"}]}, "sdkappid"),
        ({"limits": {"balance": -1}}, "balance"),
        ({"limits": {"blacklist": "13700000009"}}, "blacklist"),
        ({"reports": {"callback_url": "ftp://x"}}, "callback_url"),
        ({"reports": {"fail_ratio": 2}}, "fail_ratio"),
        ({"faults": {"rates": {"9999": 0.1}}}, "9999"),
        ({"scripts": {"13700000001": ["sometimes"]}}, "sometimes"),
        ({"colour": "blue"}, "colour"),
        ({"log_limit": 0}, "log_limit"),
    ],
)
def test_bad_configuration_names_the_key(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(names)):
        config_from_mapping(raw)


def test_the_appkey_never_shows_in_errors_or_reprs() -> None:
    secret = "s3cr3t key with spaces"
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"accounts": [{"sdkappid": "1", "appkey": secret}]})
    assert secret not in str(caught.value)
    config = load_config(None, appkey="d" * 32)
    assert "d" * 32 not in repr(config) and "d" * 32 not in repr(config.accounts[0])


def test_unreadable_or_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
