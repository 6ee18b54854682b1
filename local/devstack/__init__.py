"""The Docker-free local stack: services, a gateway that runs template.yaml, a local E2B-compatible API."""
