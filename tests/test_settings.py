"""Settings: environment, optional TOML file, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tillstream.core.kafka import connection_options
from tillstream.core.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TILLSTREAM_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid() -> None:
    cfg = load_settings()
    assert cfg.bootstrap_servers == ["127.0.0.1:9092"]
    assert cfg.kafka_security_protocol == "PLAINTEXT"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("TILLSTREAM_STORE_ID", "S042")
    cfg = load_settings()
    assert cfg.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert cfg.store_id == "S042"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", "localhost", "is not host:port"),
        ("TILLSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS", "PLAINTEXT"),
        ("TILLSTREAM_TOPIC_PARTITIONS", "zero", "valid integer"),
        ("TILLSTREAM_STORE_ID", "store 1!", "letters, digits"),
        ("TILLSTREAM_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "no such file"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert variable in str(err.value)
    assert message in str(err.value)


def test_sasl_needs_credentials_and_never_echoes_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TILLSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(SettingsError, match="TILLSTREAM_KAFKA_SASL_USERNAME"):
        load_settings()
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_USERNAME", "store-s001")
    monkeypatch.setenv("TILLSTREAM_KAFKA_SASL_PASSWORD", "hunter2-secret")
    cfg = load_settings()
    assert "hunter2-secret" not in repr(cfg)
    options = connection_options(cfg)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "hunter2-secret"


def test_config_file_supplies_defaults_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "tillstream.toml"
    config.write_text('store_id = "S100"\ntopic_partitions = 24\n')
    monkeypatch.setenv("TILLSTREAM_CONFIG", str(config))
    monkeypatch.setenv("TILLSTREAM_TOPIC_PARTITIONS", "6")
    cfg = load_settings()
    assert cfg.store_id == "S100"
    assert cfg.topic_partitions == 6


def test_config_file_errors_are_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TILLSTREAM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="TILLSTREAM_CONFIG: no such file"):
        load_settings()
    config = tmp_path / "bad.toml"
    config.write_text('stor_id = "S1"\n')
    monkeypatch.setenv("TILLSTREAM_CONFIG", str(config))
    with pytest.raises(SettingsError, match="TILLSTREAM_STOR_ID: not a tillstream setting"):
        load_settings()


def test_every_setting_is_documented() -> None:
    from tillstream.core.settings import Settings, env_name

    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in docs]
    assert missing == []
