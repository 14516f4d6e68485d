"""The ``tillstream`` command line: one entry point for every service and tool."""

from __future__ import annotations

import click

from tillstream import __version__
from tillstream.cli import (
    acls,
    consume,
    crm,
    demo,
    dev,
    dlq,
    edge,
    report,
    schemas,
    simulate,
    stock,
    topics,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tillstream")
def main() -> None:
    """Stream store tills and devices to head office over Kafka.

    Every option can also be set in the environment as TILLSTREAM_<SETTING>; see
    `docs/configuration.md`.
    """


for module in (dev, schemas, topics, acls, edge, consume, dlq, demo, simulate, crm, stock, report):
    for command in module.COMMANDS:
        main.add_command(command)
