"""The live view's page files are package data (worker/web/static/), served by their routes with their types,
declared in pyproject's package-data, and the script never parses what it shows as markup."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

from worker.web import live_view
from worker.web.assets import APP_CSS, APP_JS, INDEX_HTML, load_asset

ROOT = Path(__file__).resolve().parents[2]
STATIC = files("worker.web").joinpath("static")


def test_every_static_file_is_served_at_its_route_with_its_type() -> None:
    names = sorted(entry.name for entry in STATIC.iterdir())
    assert names == ["app.css", "app.js", "index.html"]
    routes = {"/": "index.html", "/static/app.js": "app.js", "/static/app.css": "app.css"}
    for route, name in routes.items():
        served = live_view._STATIC[route]
        assert served.body == STATIC.joinpath(name).read_bytes() and served.body, route
        assert served == load_asset(name)
    assert INDEX_HTML.content_type == "text/html; charset=utf-8"
    assert APP_JS.content_type == "text/javascript; charset=utf-8"
    assert APP_CSS.content_type == "text/css; charset=utf-8"


def test_the_page_loads_its_script_and_style_from_served_routes() -> None:
    page = INDEX_HTML.body.decode()
    linked = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page))
    assert linked == {"/static/app.js", "/static/app.css"} and linked <= set(live_view._STATIC)


def test_the_script_builds_nodes_as_text_never_as_markup() -> None:
    script = APP_JS.body.decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "textContent" in script and "createElement" in script


def test_pyproject_ships_the_static_files_as_package_data() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["worker.web"]
    for entry in STATIC.iterdir():
        assert any(fnmatch(f"static/{entry.name}", pattern) for pattern in patterns), entry.name
