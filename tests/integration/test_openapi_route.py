"""GET /openapi.json through the local API Gateway (the template's route, no authorizer): the packaged
document, to anyone, with or without credentials; and the dev stack's /docs page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devstack.gateway import Request
from plugins.api import Api

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_document_is_served_without_credentials(api: Api) -> None:
    reply = api.call("GET", "/openapi.json", key=None)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == json.loads(DOCUMENT.read_text())


def test_credentials_do_not_matter_for_it(api: Api) -> None:
    reply = api.call("GET", "/openapi.json", key="ssk_0123456789ab_" + "A" * 43)
    assert reply.status == 200 and reply.body["openapi"].startswith("3.1.")
    assert api.call("POST", "/openapi.json", key=None).status == 404  # only GET is routed


def test_the_dev_stack_serves_a_reference_page_from_local_files(api: Api) -> None:
    """/docs (the dev stack only): Swagger UI from the flask-swagger-ui package's files, no CDN."""
    page = api.gateway.handle(request("/docs"))
    assert page.status == 200 and dict(page.headers)["content-type"].startswith("text/html")
    html = page.body.decode()
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert referenced and all(url.startswith("/docs/") for url in referenced), referenced
    assert '"/openapi.json"' in html  # the document this gateway serves ($default stage here)
    for url in referenced:
        asset = api.gateway.handle(request(url))
        assert asset.status == 200 and len(asset.body) > 100, url
    bundle = api.gateway.handle(request("/docs/swagger-ui-bundle.js"))
    assert dict(bundle.headers)["content-type"] == "application/javascript"
    for stray in ("/docs/nope.js", "/docs/../pyproject.toml", "/docs/%2e%2e/pyproject.toml"):
        assert api.gateway.handle(request(stray)).status == 404, stray


def request(path: str) -> Request:
    return Request("GET", path, "", "HTTP/1.1", [], b"", "127.0.0.1", "test")
