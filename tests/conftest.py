"""Shared fixtures. Services (moto server, redis-server, the local E2B API) are real processes on free
loopback ports, started by the plugins below; nothing is assumed to be running."""

pytest_plugins = ["plugins.services", "plugins.e2b", "plugins.api", "plugins.teardown", "plugins.streams"]
