"""Tables for people reading a terminal."""

from __future__ import annotations

from datetime import datetime

import click

from ..conversations.schemas import format_timestamp


def echo_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns, for people reading a terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def moment(value: datetime | None) -> str:
    """A time as the API writes it, or "-" for none."""
    return format_timestamp(value) if value else "-"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
