"""GET /openapi.json through the local API Gateway (the template's route, no authorizer): the packaged
document, to anyone, with or without credentials."""

from __future__ import annotations

import json
from pathlib import Path

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
