"""The live view's page files are package data (worker/web/static/), served by their routes with their types,
declared in pyproject's package-data, and the script never parses what it shows as markup."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

from worker.api.app import create_app, routes_of
from worker.settings import Settings
from worker.web.assets import APP_CSS, APP_JS, INDEX_HTML, LOGIN_HTML, load_asset

ROOT = Path(__file__).resolve().parents[2]
STATIC = files("worker.web").joinpath("static")


def _app_paths() -> set[str]:
    app = create_app(Settings(key_prefix="unit-web:", ledger_path="/nonexistent/ledger.db"))
    return {route.path for route in routes_of(app.routes)}


def test_every_static_file_is_loaded_with_its_type() -> None:
    names = sorted(entry.name for entry in STATIC.iterdir())
    assert names == ["app.css", "app.js", "index.html", "login.html"]
    for asset, name in ((INDEX_HTML, "index.html"), (LOGIN_HTML, "login.html"), (APP_JS, "app.js")):
        assert asset == load_asset(name) and asset.body == STATIC.joinpath(name).read_bytes()
    assert APP_CSS == load_asset("app.css")
    assert INDEX_HTML.content_type == LOGIN_HTML.content_type == "text/html; charset=utf-8"
    assert APP_JS.content_type == "text/javascript; charset=utf-8"
    assert APP_CSS.content_type == "text/css; charset=utf-8"


def test_the_pages_load_their_script_and_style_from_served_routes() -> None:
    paths = _app_paths()
    for page in (INDEX_HTML, LOGIN_HTML):
        linked = set(re.findall(r'(?:src|href)="(/web/static/[^"]+)"', page.body.decode()))
        assert linked and linked <= paths, linked
    assert {"/web/", "/web/login", "/web/job/{job_id}", "/web/static/app.js"} <= paths
    assert 'action="/web/login"' in LOGIN_HTML.body.decode()


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
