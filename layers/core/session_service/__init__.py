"""The session service's shared package, shipped as the CoreLayer. Its folders are its layers:

    domain/     entities, request shapes, errors, ids and keys, ports (the interfaces the services need).
                Imports nothing of ours above it; no vendor SDK.
    services/   what an operation means (sessions, workbench, tools, messages, tokens, feed, teardown,
                liveness, ...): plain methods over ports. Imports domain and the support modules only.
    adapters/   the ports' implementations: DynamoDB (PynamoDB), Redis, SQS, KMS, EventBridge, E2B, AES-GCM,
                Powertools idempotency. The only folder that imports vendor SDKs; imports domain and support.
    edges/      protocols translated into service calls: HTTP (api, idempotency, openapi, operations),
                MCP, the admin CLI. Imports services, domain, support and the composition root.
    runtime.py  the composition root: the one place that builds adapters and services from Settings.
    settings.py, observability.py   support, read by every layer: typed environment; Logger/Metrics/Tracer.

functions/*/app.py sit above the edges. tests/unit/test_layering.py keeps the rule: an import that goes up a
layer, a vendor SDK above the adapters, or an import cycle fails `make test`. Every session path asks
services/liveness.py whether the session is live for the caller (the one definition of that promise).
"""
