"""Helpers shared by CLI commands: settings with friendly errors, running coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from tillstream.core.identifiers import text_problem
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


CARD_NUMBER_REFUSED = (
    "looks like a card number (PAN); it would travel on an event, and no card number may "
    "(the value is not shown)"
)


def no_card_number(ctx: click.Context, param: click.Parameter, value: T) -> T:
    """A click callback for every argument or option that becomes part of an event: the
    card-number rule of every channel (``tillstream.core.identifiers``), refused naming the
    argument and never echoing the value."""
    for text in value if isinstance(value, tuple) else (value,):
        if isinstance(text, str) and text_problem(text) is not None:
            raise click.BadParameter(CARD_NUMBER_REFUSED, ctx=ctx, param=param)
    return value
