"""The JavaScript client and the dashboard, served from ``hotpath/static/``.

Only the files named in ``ROUTES`` are served: a request path is looked up, never joined
onto a directory, so there is no path to traverse. Each file is read once, on its first
request, and kept in memory (they are small). Responses carry ``Cache-Control: no-cache``:
the names carry no version, so browsers revalidate and pick up a new release at once.
"""

from __future__ import annotations

import logging
from importlib import resources

from picows import WSUpgradeResponse, WSUpgradeResponseWithListener

from hotpath.gateway import http

log = logging.getLogger("hotpath.gateway")

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_HTML = "text/html; charset=utf-8"

# request path -> (file under hotpath/static/, Content-Type)
ROUTES: dict[str, tuple[str, str]] = {
    "/client.js": ("client.js", _JS),
    "/client.mjs": ("client.mjs", _JS),
    "/dashboard": ("dashboard.html", _HTML),
    "/static/dashboard.css": ("dashboard.css", _CSS),
    "/static/dashboard.js": ("dashboard.js", _JS),
    "/static/format.js": ("format.js", _JS),
    "/static/table.js": ("table.js", _JS),
    "/static/detail.js": ("detail.js", _JS),
    "/static/chart.js": ("chart.js", _JS),
}

# The dashboard loads only its own files; the WebSocket and the JSON endpoints are on
# this origin (ws:/wss: spelled out for browsers whose 'self' does not cover them).
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")

_cache: dict[str, bytes] = {}


def static_response(path: str) -> WSUpgradeResponseWithListener | None:
    """The response for a static file, or None when ``path`` is not one of ours."""
    route = ROUTES.get(path)
    if route is None:
        return None
    name, content_type = route
    try:
        body = _read(name)
    except OSError as exc:  # a broken installation, not a client error
        log.error("static file %s unreadable: %s", name, exc)
        return http.text_response(500, f"static file {name} is missing from this installation\n")
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache",
               "X-Content-Type-Options": "nosniff"}
    if content_type == _HTML:
        headers["Content-Security-Policy"] = _CSP
    response = WSUpgradeResponse.create_ok_response(body, extra_headers=headers)
    return WSUpgradeResponseWithListener(response, None)


def _read(name: str) -> bytes:
    body = _cache.get(name)
    if body is None:
        body = resources.files("hotpath").joinpath("static").joinpath(name).read_bytes()
        _cache[name] = body
    return body
