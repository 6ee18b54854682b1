"""DynamoDB through PynamoDB, one module per thing stored: `tables` (the model classes, bound per
configuration), `sessions` (sessions and their tag claims), `projects`, `api_keys`, `cache_epoch`, and
`streams` (decoding the sessions table's stream records). Key layout: session_service.domain.keys."""
