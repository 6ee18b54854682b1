"""The PynamoDB models, one module per table of template.yaml, declared once at module level.

A model here names no table: `bind` gives a configuration (Settings: table names, endpoint, timeouts) its own
subclass, with fresh index objects bound to it. One process can hold several configurations at once (the dev
stack runs every function in one process; the tests read a restored backup's tables beside the live ones),
which one class-level Meta could not serve.
"""
