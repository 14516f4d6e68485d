"""Fuzzing configuration: any environment value (bytes included) and any TOML config file
either loads or raises SettingsError naming the variable; a secret value is never echoed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_support import AWKWARD, FUZZ, TIMEOUT, text
from tillstream.core.settings import (
    CONFIG_FILE_VARIABLE,
    Settings,
    SettingsError,
    env_name,
    load_settings,
)

pytestmark = pytest.mark.timeout(TIMEOUT)
FIELDS = sorted(Settings.model_fields)
SECRETS = sorted(f for f, info in Settings.model_fields.items() if "Secret" in str(info.annotation))
PLAIN = [f for f in FIELDS if f not in SECRETS]
PREFIX = env_name("")


@contextlib.contextmanager
def environment(values: dict[str, str | bytes]) -> Iterator[None]:
    """Exactly ``values`` as the TILLSTREAM_ variables (bytes as the OS holds them)."""
    saved = {k: v for k, v in os.environb.items() if k.startswith(PREFIX.encode())}
    for key in saved:
        del os.environb[key]
    try:
        for key, value in values.items():
            os.environb[key.encode()] = value if isinstance(value, bytes) else os.fsencode(value)
        yield
    finally:
        for key in [k for k in os.environb if k.startswith(PREFIX.encode())]:
            del os.environb[key]
        os.environb.update(saved)


def load(values: dict[str, str | bytes]) -> Settings | SettingsError:
    """Settings, or the SettingsError; any other exception fails the test."""
    with environment(values):
        try:
            return load_settings()
        except SettingsError as exc:
            return exc


# What an environment can hold: text, and raw bytes (no NUL) that are not valid UTF-8.
env_values = st.one_of(
    text,
    st.sampled_from([*AWKWARD, "a" * 5000, "/", ".", "-", "[::1]:0", "x:65536", "true"]),
    st.binary(max_size=40).filter(lambda b: b"\0" not in b),
)


@FUZZ
@given(variable=st.sampled_from([*map(env_name, FIELDS), CONFIG_FILE_VARIABLE]), value=env_values)
def test_any_value_of_one_variable_loads_or_names_it(variable: str, value: str | bytes) -> None:
    result = load({variable: value})
    if isinstance(result, SettingsError):
        assert variable in str(result), str(result)


@FUZZ
@given(
    values=st.dictionaries(st.sampled_from(PLAIN), env_values, min_size=1, max_size=6),
    secrets=st.dictionaries(
        st.sampled_from(SECRETS) if SECRETS else st.nothing(), text, max_size=len(SECRETS)
    ),
)
def test_secrets_are_never_echoed(values: dict[str, str | bytes], secrets: dict[str, str]) -> None:
    marked = {f: f"pw-{value}-{f}" for f, value in secrets.items()}  # unmistakable values
    env: dict[str, str | bytes] = {env_name(f): v for f, v in values.items()}
    env.update({env_name(f): v for f, v in marked.items()})
    result = load(env)
    if isinstance(result, Settings):
        assert not any(v in repr(result) for v in marked.values())
        return
    message = str(result)
    assert any(name in message for name in env), message
    assert not any(v in message for v in marked.values()), "a secret was echoed"


_files = itertools.count()

toml_values = st.recursive(
    st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.floats(allow_nan=False) | text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), inner, max_size=2)
    ),
    max_leaves=4,
)


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf, -inf and exponents are TOML too
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(st.sampled_from([*FIELDS, "stor_id", "x"]), toml_values, max_size=4).map(
            lambda table: "\n".join(f"{k} = {toml(v)}" for k, v in table.items()).encode()
        ),
    )
)
def test_any_config_file_loads_or_names_what_is_wrong(tmp_path: Path, content: bytes) -> None:
    config = tmp_path / f"tillstream-{next(_files)}.toml"
    config.write_bytes(content)
    result = load({CONFIG_FILE_VARIABLE: str(config)})
    if isinstance(result, SettingsError):
        assert PREFIX in str(result), str(result)
