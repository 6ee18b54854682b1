"""Adapters: the only modules that import vendor SDKs (boto3, pynamodb, redis, e2b)."""
