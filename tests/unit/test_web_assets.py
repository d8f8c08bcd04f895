"""The live view's page files are package data (worker/web/static/), served by their routes with their types,
declared in pyproject's package-data, and the script never parses what it shows as markup."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

from governance.api_tokens import Scope
from plangate_base.vocabulary import Decision, EventKind, JobState
from worker.api.app import create_app, routes_of
from worker.api.web import WORDS_JS
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


def test_the_page_spells_no_word_of_the_vocabulary_itself() -> None:
    words = WORDS_JS.removeprefix("'use strict';\nconst WORDS = Object.freeze(").removesuffix(");\n")
    served = json.loads(words)
    assert served["state"] == {s.name: s.value for s in JobState}
    assert (
        served["decision"]["ESCALATE"] == Decision.ESCALATE and served["scope"]["REVIEWER"] == Scope.REVIEWER
    )
    script = APP_JS.body.decode()
    compared = set(re.findall(r"[!=]==\s*'([^']*)'", script))  # what the script tests values against
    vocabulary = {w.value for w in (*JobState, *EventKind, *Decision, *Scope)}
    assert "ESCALATE" in vocabulary and compared & vocabulary == set(), compared
    index = INDEX_HTML.body.decode()
    assert index.index("/web/static/words.js") < index.index("/web/static/app.js")
