"""events/ holds a sample event for every route and event source of template.yaml (they are what
`sam local invoke -e` takes), and each is the shape its trigger sends."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.template import Template

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_every_http_route_has_a_sample_event(template: Template) -> None:
    samples = {}
    for path in EVENTS.glob("*.json"):
        event = json.loads(path.read_text())
        if event.get("version") == "2.0" and event.get("routeKey"):
            samples[event["routeKey"]] = path.name
    routes = {f"{route.method} {route.path}" for route in template.routes}
    assert sorted(routes - set(samples)) == []
    for route_key, name in samples.items():
        event = json.loads((EVENTS / name).read_text())
        assert event["requestContext"]["routeKey"] == route_key, name
        method, _, path_template = route_key.partition(" ")
        assert method == "ANY" or event["requestContext"]["http"]["method"] == method, name
        expected = path_template
        for param, value in (event.get("pathParameters") or {}).items():
            expected = expected.replace("{" + param + "}", value)
        assert event["rawPath"] == expected, name
