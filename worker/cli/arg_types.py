"""argparse types the commands share: numbers checked where they are typed, one line and exit 2 otherwise."""

from __future__ import annotations

import argparse


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, a whole number 0..65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {port}")
    return port


def add_listen_args(p: argparse.ArgumentParser, default_port: int) -> None:
    """`--host` and `--port` of a command that serves HTTP (`serve`, `web`)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=port_number,
        default=default_port,
        help=f"TCP port (default {default_port}; 0 picks a free one)",
    )
