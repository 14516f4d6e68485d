"""Helpers shared by CLI commands: settings with friendly errors, running coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from tillstream.core.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    """Settings from the environment plus CLI options; a bad value ends the command clearly."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; Ctrl-C ends it without a traceback."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
