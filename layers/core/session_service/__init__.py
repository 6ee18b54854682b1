"""Shared package of the session service: domain, service layer and adapters (shipped as a Lambda layer)."""
