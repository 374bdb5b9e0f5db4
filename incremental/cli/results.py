"""`--json`: a command's result as one JSON object on one line of standard output, instead of its text."""

from __future__ import annotations

from typing import Any

import click
import orjson

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as one JSON object (one line), not as text.")


def echo_result(as_json: bool, text: str, result: dict[str, Any]) -> None:
    click.echo(orjson.dumps(result).decode() if as_json else text)
