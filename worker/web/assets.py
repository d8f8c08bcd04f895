"""The page `plangate web` serves: index.html, app.js and app.css, package data in worker/web/static/.

They are read once, with importlib.resources, when the live view is imported (an installed wheel holds
them beside this module). The script builds every node with createElement and textContent (never
innerHTML), so nothing read from Redis or the ledger is ever parsed as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import PurePosixPath

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    """One static file as it is served: its bytes and its Content-Type."""

    body: bytes
    content_type: str


def load_asset(name: str) -> Asset:
    """The file `name` of worker/web/static/ (its type from its suffix: .html, .js or .css)."""
    content_type = _CONTENT_TYPES[PurePosixPath(name).suffix]
    return Asset(files(__package__).joinpath("static", name).read_bytes(), content_type)


INDEX_HTML = load_asset("index.html")
APP_JS = load_asset("app.js")
APP_CSS = load_asset("app.css")
LOGIN_HTML = load_asset("login.html")
