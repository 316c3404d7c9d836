"""Configuration: env names, .env, key files, TOML accounts, errors that name their setting."""

from __future__ import annotations

import os
import traceback
from datetime import timedelta
from pathlib import Path

import pytest

from worker.config import Account, ConfigError, Settings, load_settings

KEY = "5f03a35d00ee52a21327ab048186a2c4"  # the documented example key
OTHER_KEY = "9d8e0a0b6f1c4e2aa0b1c2d3e4f5a6b7"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SMS_* variable of the machine, and a working directory without a .env file."""
    for name in list(os.environ):
        if name.startswith("SMS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def config_error(**env: str) -> str:
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_env(monkeypatch, **env)
        with pytest.raises(ConfigError) as caught:
            load_settings()
    return str(caught.value)


def write_accounts(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///sms-ledger.db"
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.gateway_url == "https://yun.tim.qq.com"
    assert (settings.send_rate, settings.lease_seconds, settings.sweep_after_seconds) == (
        50,
        60,
        60,
    )
    assert settings.max_deliveries == 5
    assert (settings.connect_timeout, settings.read_timeout) == (3.05, 10)
    assert settings.ttl("verification") == timedelta(minutes=5)
    assert settings.ttl("notification") == timedelta(hours=6)
    assert settings.ttl("marketing") == timedelta(days=3)
    assert settings.resends_ambiguous("verification")
    assert settings.resends_ambiguous("notification")
    assert not settings.resends_ambiguous("marketing")
    assert settings.account_names == ("default",)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        SMS_DATABASE_URL="postgresql://sms@db.example/sms",
        SMS_BROKER_URL="redis://cache.example:6380/2",
        SMS_GATEWAY_URL="http://127.0.0.1:8080/",
        SMS_SDKAPPID="1400000000",
        SMS_APPKEY=KEY,
        SMS_SEND_RATE="12.5",
        SMS_LEASE_SECONDS="30",
        SMS_SWEEP_AFTER_SECONDS="90",
        SMS_MAX_DELIVERIES="3",
        SMS_VERIFICATION_TTL_SECONDS="120",
        SMS_NOTIFICATION_TTL_SECONDS="600",
        SMS_MARKETING_TTL_SECONDS="3600",
        SMS_RESEND_AMBIGUOUS=" marketing ,verification",
        SMS_CONNECT_TIMEOUT="1",
        SMS_READ_TIMEOUT="4",
    )
    settings = load_settings()
    assert settings.database_url == "postgresql://sms@db.example/sms"
    assert settings.broker_url == "redis://cache.example:6380/2"
    assert (settings.send_rate, settings.lease_seconds, settings.sweep_after_seconds) == (
        12.5,
        30,
        90,
    )
    assert settings.max_deliveries == 3
    assert settings.ttl("verification") == timedelta(seconds=120)
    assert settings.ttl("notification") == timedelta(seconds=600)
    assert settings.ttl("marketing") == timedelta(seconds=3600)
    assert settings.resend_ambiguous == {"marketing", "verification"}
    assert (settings.connect_timeout, settings.read_timeout) == (1, 4)
    account = settings.account()
    assert account == settings.account("default")
    assert (account.name, account.sdkappid, account.gateway_url, account.send_rate) == (
        "default",
        "1400000000",
        "http://127.0.0.1:8080",
        12.5,
    )
    assert account.appkey.get_secret_value() == KEY


def test_resend_ambiguous_none(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, SMS_RESEND_AMBIGUOUS="none")
    settings = load_settings()
    assert not any(settings.resends_ambiguous(kind) for kind in ("verification", "marketing"))


def test_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"SMS_SDKAPPID=1400000001\nSMS_APPKEY={KEY}\nSMS_SEND_RATE=7\nOTHER_TOOL=1\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.account().sdkappid == "1400000001"
    assert settings.send_rate == 7
    set_env(monkeypatch, SMS_SEND_RATE="9")
    assert load_settings().send_rate == 9
    assert load_settings(env_file=None).sdkappid is None


def test_appkey_file_is_read_and_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "appkey"
    key_file.write_text(f"  {KEY}\n\n", encoding="utf-8")
    set_env(monkeypatch, SMS_SDKAPPID="1400000000", SMS_APPKEY_FILE=str(key_file))
    assert load_settings().account().appkey.get_secret_value() == KEY


def test_credentials_are_only_needed_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()  # what `sms-worker migrate` does: no error
    with pytest.raises(ConfigError, match=r"^SMS_SDKAPPID: not set"):
        settings.account()
    set_env(monkeypatch, SMS_SDKAPPID="1400000000")
    with pytest.raises(ConfigError, match=r"^SMS_APPKEY: not set"):
        load_settings().account()


def test_unknown_account_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown account 'shop'; known: default"):
        load_settings().account("shop")


def test_accounts_from_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "shop").write_text(OTHER_KEY + "\n", encoding="utf-8")
    path = write_accounts(
        tmp_path,
        f"""
        default_account = "app"

        [accounts.app]
        sdkappid = 1400000000
        appkey = "{KEY}"
        send_rate = 20

        [accounts.shop]
        sdkappid = "1400000002"
        appkey_file = "keys/shop"
        gateway_url = "http://127.0.0.1:9000"
        """,
    )
    set_env(
        monkeypatch,
        SMS_CONFIG=str(path),
        SMS_GATEWAY_URL="http://127.0.0.1:8080",
        SMS_SEND_RATE="5",
    )
    settings = load_settings()
    assert settings.account_names == ("app", "shop")
    assert settings.account() == Account(
        "app", "1400000000", settings.account("app").appkey, "http://127.0.0.1:8080", 20.0
    )
    assert settings.account().appkey.get_secret_value() == KEY
    shop = settings.account("shop")
    assert (shop.sdkappid, shop.gateway_url, shop.send_rate) == (
        "1400000002",
        "http://127.0.0.1:9000",
        5.0,
    )
    assert shop.appkey.get_secret_value() == OTHER_KEY
    with pytest.raises(ConfigError, match="unknown account 'default'; known: app, shop"):
        settings.account("default")


def test_toml_default_account_when_unambiguous(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    one = write_accounts(tmp_path, f'[accounts.only]\nsdkappid = 1\nappkey = "{KEY}"\n')
    set_env(monkeypatch, SMS_CONFIG=str(one))
    assert load_settings().account().name == "only"
    two = tmp_path / "two.toml"
    two.write_text(
        f'[accounts.a]\nsdkappid = 1\nappkey = "{KEY}"\n'
        f'[accounts.b]\nsdkappid = 2\nappkey = "{KEY}"\n',
        encoding="utf-8",
    )
    set_env(monkeypatch, SMS_CONFIG=str(two))
    with pytest.raises(ConfigError, match="no default account; set default_account to one of a, b"):
        load_settings().account()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SMS_SEND_RATE": "-3"},
            "SMS_SEND_RATE: must be a number of messages a second above 0 and at most 1000000, "
            "got '-3'",
        ),
        ({"SMS_SEND_RATE": "1e300"}, "SMS_SEND_RATE: must be a number of messages a second"),
        (
            {"SMS_LEASE_SECONDS": "soon"},
            "SMS_LEASE_SECONDS: must be a number of seconds above 0 and at most 86400, got 'soon'",
        ),
        ({"SMS_SWEEP_AFTER_SECONDS": "1e12"}, "SMS_SWEEP_AFTER_SECONDS: must be a number of"),
        ({"SMS_MARKETING_TTL_SECONDS": "1e300"}, "SMS_MARKETING_TTL_SECONDS: must be a number"),
        ({"SMS_READ_TIMEOUT": "nan"}, "SMS_READ_TIMEOUT: must be a number of seconds above 0"),
        ({"SMS_CONNECT_TIMEOUT": "3600"}, "SMS_CONNECT_TIMEOUT: must be a number of seconds"),
        (
            {"SMS_MAX_DELIVERIES": "2.5"},
            "SMS_MAX_DELIVERIES: must be a whole number of deliveries from 1 to 1000",
        ),
        ({"SMS_MAX_DELIVERIES": "0"}, "SMS_MAX_DELIVERIES: must be a whole number"),
        ({"SMS_CLOCK_OFFSET_SECONDS": "1e300"}, "SMS_CLOCK_OFFSET_SECONDS: must be a number"),
        ({"SMS_CLOCK_OFFSET_SECONDS": "inf"}, "SMS_CLOCK_OFFSET_SECONDS: must be a number"),
        ({"SMS_METRICS_PORT": "70000"}, "SMS_METRICS_PORT: input should be less than or equal"),
        ({"SMS_RECEIVER_METRICS": "maybe"}, "SMS_RECEIVER_METRICS: input should be a valid bool"),
        ({"SMS_LOG_FORMAT": "xml"}, "SMS_LOG_FORMAT: input should be 'text' or 'json'"),
        ({"SMS_GATEWAY_URL": "yun.tim.qq.com"}, "SMS_GATEWAY_URL: must be a URL such as"),
        ({"SMS_GATEWAY_URL": "ftp://yun.tim.qq.com"}, "SMS_GATEWAY_URL: must be an http(s) URL"),
        ({"SMS_GATEWAY_URL": "http://127.0.0.1:80a"}, "SMS_GATEWAY_URL: has a port that is not"),
        ({"SMS_SDKAPPID": "app-1"}, "SMS_SDKAPPID: must be the numeric SDKAppID"),
        ({"SMS_DATABASE_URL": "ledger.db"}, "SMS_DATABASE_URL: not a database URL"),
        (
            {"SMS_DATABASE_URL": "mysql://u:hunter2@db/sms"},
            "SMS_DATABASE_URL: the ledger runs on PostgreSQL or SQLite, not mysql",
        ),
        (
            {"SMS_DATABASE_URL": "postgresql://u:hunter2@db:5x/sms"},
            "SMS_DATABASE_URL: has a port that is not a number",
        ),
        (
            {"SMS_DATABASE_URL": "sqlite+nodriver:///ledger.db"},
            "SMS_DATABASE_URL: unknown driver 'sqlite+nodriver'",
        ),
        ({"SMS_BROKER_URL": "localhost"}, "SMS_BROKER_URL: must be a URL"),
        (
            {"SMS_BROKER_URL": "foo://u:hunter2@localhost"},
            "SMS_BROKER_URL: unknown scheme 'foo'; use redis://, rediss:// or amqp://",
        ),
        ({"SMS_BROKER_URL": "http://localhost:6379"}, "SMS_BROKER_URL: unknown scheme 'http'"),
        (
            {"SMS_BROKER_URL": "redis://:hunter2@localhost:99999/0"},
            "SMS_BROKER_URL: has a port that is not a number from 1 to 65535",
        ),
        (
            {"SMS_BROKER_URL": "redis://localhost:6379/zero"},
            "SMS_BROKER_URL: names a database that is not a whole number",
        ),
        (
            {"SMS_REDIS_URL": "http://u:hunter2@localhost:6379/1"},
            "SMS_REDIS_URL: must be a Redis URL",
        ),
        ({"SMS_REDIS_URL": "redis://localhost:port/1"}, "SMS_REDIS_URL: has a port that is not"),
        ({"SMS_REDIS_URL": "redis://localhost/one"}, "SMS_REDIS_URL: names a database that is"),
        ({"SMS_RESEND_AMBIGUOUS": "sms"}, "SMS_RESEND_AMBIGUOUS: unknown kind sms"),
        ({"SMS_APPKEY_FILE": "/x"}, "SMS_APPKEY_FILE: cannot read '/x': No such file"),
        ({"SMS_CONFIG": "/x.toml"}, "SMS_CONFIG: cannot read '/x.toml': No such file"),
        (
            {"SMS_APPKEY": KEY, "SMS_APPKEY_FILE": "/x"},
            "SMS_APPKEY_FILE: SMS_APPKEY is set too; keep one of them",
        ),
    ],
)
def test_every_error_names_its_setting(env: dict[str, str], expected: str) -> None:
    message = config_error(**env)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            f'[accounts.shop]\nappkey = "{KEY}"\n',
            "SMS_CONFIG: accounts.shop.sdkappid: field required",
        ),
        ("[accounts.shop]\nsdkappid = 1\n", "SMS_CONFIG: accounts.shop: set exactly one of appkey"),
        (
            f'[accounts.shop]\nsdkappid = 1\nappkey = "{KEY}"\nsend_rate = 0\n',
            "SMS_CONFIG: accounts.shop.send_rate: must be a number of messages a second above 0",
        ),
        (
            f'[accounts.shop]\nsdkappid = 1\napp_key = "{KEY}"\n',
            "SMS_CONFIG: accounts.shop.app_key: unknown key",
        ),
        (
            '[accounts.shop]\nsdkappid = 1\nappkey_file = "missing"\n',
            "SMS_CONFIG: accounts.shop.appkey_file: cannot read",
        ),
        (
            f'default_account = "web"\n[accounts.shop]\nsdkappid = 1\nappkey = "{KEY}"\n',
            "SMS_CONFIG: default_account 'web' is not one of shop",
        ),
        ("accounts = {}\n", "names no accounts"),
        ("[accounts.shop\n", "is not valid TOML"),
        ("[accounts.shop]\nsdkappid = 1\nappkey = '\udcff'\n", "is not UTF-8 text"),
        (
            f'[accounts.shop]\nsdkappid = 1\nappkey = "{KEY}"\nsend_rate = 1e300\n',
            "SMS_CONFIG: accounts.shop.send_rate: must be a number of messages a second",
        ),
    ],
)
def test_toml_errors_name_the_setting(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_bytes(toml.encode("utf-8", "surrogateescape"))  # \udcff: the byte 0xff
    message = config_error(SMS_CONFIG=str(path))
    assert expected in message
    assert message.startswith("SMS_CONFIG: ")
    assert KEY not in message


def test_config_file_and_env_credentials_do_not_mix(tmp_path: Path) -> None:
    path = write_accounts(tmp_path, f'[accounts.shop]\nsdkappid = 1\nappkey = "{KEY}"\n')
    message = config_error(SMS_CONFIG=str(path), SMS_APPKEY=OTHER_KEY)
    assert message.startswith("SMS_APPKEY: not used when SMS_CONFIG names the accounts")
    assert OTHER_KEY not in message


def test_the_appkey_never_shows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_env(monkeypatch, SMS_SDKAPPID="1400000000", SMS_APPKEY=KEY)
    settings = load_settings()
    account = settings.account()
    for text in (repr(settings), str(settings), repr(account), str(account)):
        assert KEY not in text
    assert account.appkey.get_secret_value() == KEY

    # An error raised while the key is loaded does not carry it, not even in its traceback.
    set_env(monkeypatch, SMS_SEND_RATE="-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert KEY not in "".join(traceback.format_exception(caught.value))
    path = write_accounts(tmp_path, f'[accounts.shop]\nsdkappid = "x"\nappkey = "{KEY}"\n')
    monkeypatch.delenv("SMS_SDKAPPID")
    monkeypatch.delenv("SMS_APPKEY")
    set_env(monkeypatch, SMS_CONFIG=str(path), SMS_SEND_RATE="1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "accounts.shop.sdkappid" in str(caught.value)
    assert KEY not in "".join(traceback.format_exception(caught.value))


def test_settings_can_be_built_directly() -> None:
    settings = Settings(_env_file=None, sdkappid="1400000000", appkey=KEY, send_rate=3)
    assert settings.account().send_rate == 3


def test_the_appkey_setting_names_where_the_key_was_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "appkey"
    key_file.write_text(KEY, encoding="utf-8")
    set_env(monkeypatch, SMS_SDKAPPID="1400000000", SMS_APPKEY=KEY)
    assert load_settings().appkey_setting("default") == "SMS_APPKEY"
    monkeypatch.delenv("SMS_APPKEY")
    set_env(monkeypatch, SMS_APPKEY_FILE=str(key_file))
    assert load_settings().appkey_setting("default") == "SMS_APPKEY_FILE"

    path = write_accounts(
        tmp_path,
        f'[accounts.app]\nsdkappid = 1\nappkey = "{KEY}"\n'
        '[accounts.shop]\nsdkappid = 2\nappkey_file = "appkey"\n',
    )
    for name in ("SMS_SDKAPPID", "SMS_APPKEY_FILE"):
        monkeypatch.delenv(name)
    set_env(monkeypatch, SMS_CONFIG=str(path))
    settings = load_settings()
    assert settings.appkey_setting("app") == "accounts.app.appkey in the SMS_CONFIG file"
    assert settings.appkey_setting("shop") == "accounts.shop.appkey_file in the SMS_CONFIG file"


def test_a_dotenv_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"SMS_SEND_RATE=\xff\n")
    assert config_error().startswith(".env: not UTF-8 text")
