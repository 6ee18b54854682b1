"""`/docs` in the dev stack only: a reference page for the OpenAPI document the API serves, rendered by
Swagger UI from the files the `flask-swagger-ui` package ships (swagger-ui 5, which reads OpenAPI 3.1). No
CDN and no internet: the page, its scripts and the document all come from this machine. The deployed API has
GET /openapi.json but no page (API Gateway routes only to functions, and a page is not worth one).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

PREFIX = "/docs"
TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png", ".html": "text/html"}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>session-service API reference (dev stack)</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: %(document)s,
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis],
      });
    };
  </script>
</body>
</html>
"""


def assets() -> Path | None:
    """The package's dist folder, found without importing it (its module imports Flask)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dist"
    return folder if folder.is_dir() else None


def serve(path: str, document_url: str) -> tuple[int, str, bytes] | None:
    """(status, content type, body) for a path under /docs; None for any other path."""
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    folder = assets()
    if folder is None:
        return 503, "text/plain", b"/docs needs the flask-swagger-ui package (make venv installs it)\n"
    name = path[len(PREFIX) :].lstrip("/")
    if name in ("", "index.html"):
        return 200, "text/html; charset=utf-8", (PAGE % {"document": json.dumps(document_url)}).encode()
    shipped = {entry.name for entry in folder.iterdir() if entry.is_file()}
    if name not in shipped:  # a name the package ships, never a path
        return 404, "text/plain", b"not found\n"
    file = folder / name
    return 200, TYPES.get(file.suffix, "application/octet-stream"), file.read_bytes()
