"""The ``tillstream`` command line: one entry point for every service and tool.

The developer's commands (``dev``, ``demo``, ``simulate``) are loaded only when run, so a
production container running ``tillstream edge`` or ``tillstream consume`` never imports the
developer machinery (``tillstream.dev``, ``tillstream.demo``, ``tillstream.simulate``).
"""

from __future__ import annotations

import importlib

import click

from tillstream import __version__
from tillstream.cli import (
    acls,
    audit,
    consume,
    crm,
    dlq,
    edge,
    fleet,
    masterdata,
    poslog,
    report,
    schemas,
    stock,
    topics,
)

DEVELOPER_COMMANDS = {
    "dev": "tillstream.cli.dev:dev",
    "demo": "tillstream.cli.demo:demo",
    "simulate": "tillstream.cli.simulate:simulate",
}
"""Command name: where it lives (``module:attribute``), imported when the command runs."""


class _Commands(click.Group):
    """The production commands, and the developer's commands loaded on first use (Click's
    lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *DEVELOPER_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in DEVELOPER_COMMANDS:
            module, attribute = DEVELOPER_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="tillstream")
def main() -> None:
    """Stream store tills and devices to head office over Kafka.

    Every option can also be set in the environment as TILLSTREAM_<SETTING>; see
    `docs/configuration.md`.
    """


for module in (
    schemas, topics, acls, edge, poslog, consume, dlq, crm, stock, masterdata, report, audit,
    fleet,
):  # fmt: skip
    for command in module.COMMANDS:
        main.add_command(command)
