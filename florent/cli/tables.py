"""Tables for people reading a terminal."""

from __future__ import annotations

import click


def echo_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns, for people reading a terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
