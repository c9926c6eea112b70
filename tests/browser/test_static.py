"""Serving the JS client and the dashboard (``hotpath.gateway.static``): the allow-list,
content types, and that every file the pages load is on it. No network."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest

from hotpath.gateway.static import ROUTES, static_response

STATIC = Path(__file__).resolve().parents[2] / "hotpath" / "static"


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_allow_listed_files_are_served(path: str) -> None:
    name, content_type = ROUTES[path]
    answer = static_response(path)
    assert answer is not None and answer.listener is None
    response = answer.response
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.body == (STATIC / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/static/../client.js", "/../pyproject.toml", "/static/", "/static", "/client.js/",
    "/static/%2e%2e/client.js", "/static/dashboard.html", "/dashboard/", "/DASHBOARD",
    "/static/..%2f..%2fpyproject.toml", "/ws", "/"])
def test_anything_else_is_not_ours(path: str) -> None:
    assert static_response(path) is None


def test_every_static_file_is_routed_and_every_route_exists() -> None:
    on_disk = {p.name for p in STATIC.iterdir() if p.is_file()}
    assert on_disk == {name for name, _ in ROUTES.values()}


def test_what_the_pages_load_is_served() -> None:
    """Relative references in the HTML and the JS modules resolve to routed paths."""
    by_name = {name: path for path, (name, _) in ROUTES.items()}
    references = re.compile(r'(?:from\s+|import\s+|href=|src=)"(\.{0,2}/?[\w./-]+\.(?:m?js|css))"')
    for name, path in by_name.items():
        if not name.endswith((".html", ".js", ".mjs")):
            continue
        for ref in references.findall((STATIC / name).read_text()):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), ref))
            assert resolved in ROUTES, f"{name} loads {ref} -> {resolved}, which is not served"


def test_html_has_a_content_security_policy() -> None:
    answer = static_response("/dashboard")
    assert answer is not None
    policy = answer.response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
