"""A local E2B-compatible API (control plane + envd commands) for development and tests; never deployed."""

from devstack.e2b_local.server import LocalE2B

__all__ = ["LocalE2B"]
