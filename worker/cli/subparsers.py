"""`plangate`'s commands, with only the parser of the command about to run built in full.

argparse's cost is per parser (each one has gettext look for translation files), and `plangate` has
about fifty. Every command is still listed with its help, for `plangate --help` and the message about
an unknown command; the others get an empty parser, and what their builders add to it is dropped.
"""

from __future__ import annotations

import argparse
from typing import Any


class Commands:
    """The top-level subparsers, building `only` (every command when None, none when "")."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None) -> None:
        self._sub = sub
        self._only = only

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        """The command's parser, or a stand-in when the command will not run."""
        if self._only is None or name == self._only:
            return self._sub.add_parser(name, **kwargs)
        self._sub.add_parser(name, help=kwargs.get("help"), add_help=False)
        return _Unbuilt()


class _Unbuilt:
    """Stands in for the parser of a command that will not run: arguments and subcommands go nowhere."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        """Dropped."""

    def set_defaults(self, **kwargs: Any) -> None:
        """Dropped."""

    def add_subparsers(self, **kwargs: Any) -> _Unbuilt:
        """Subcommands of a command that will not run."""
        return self

    def add_parser(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        """A subcommand of a command that will not run."""
        return self
