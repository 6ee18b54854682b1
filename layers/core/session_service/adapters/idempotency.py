"""The Idempotency-Key store: Powertools' idempotency utility on IdempotencyTable (template.yaml: hash key
`id`, TTL on `expiration`, on-demand). Imported only by a request that carries the header.

Record id: ``<route key>#<sha256 of [project_id, key]>``, so a key is scoped to its project (another
project's identical key is another record) and to its route. The record keeps a hash of the request (path
parameters and the validated body) for the 422, and the first response. While the first request runs the
record is INPROGRESS until the function's own deadline (the Lambda context), so a request that died with
its function can be retried once that has passed. A request that raised (any error response) deletes its
record, so its retry runs.

A stored response must fit a DynamoDB item (400 KB): a large body is kept gzip-compressed, and a body that is
still too large (an execute or tool call printing over ~300 KB of incompressible output) is kept with its
longest strings cut, setting the `<field>_truncated` flag beside one where the body has it. A replay of such
a response is therefore shorter than the first; what ran still ran once.

Powertools' exceptions become domain outcomes here: a reused key 422, a key in progress 409, the table
unreachable 503. If the table fails only when recording the result, the work has been done: the response is
returned anyway (logged and counted), and the key stays INPROGRESS until the function's deadline.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer

from session_service.adapters.aws import aws_client
from session_service.domain.errors import DependencyUnavailable, IdempotencyInProgress, IdempotencyKeyReused
from session_service.domain.ports import Work
from session_service.observability import count, logger
from session_service.settings import Settings

PLAIN_LIMIT = 32 * 1024  # bodies up to this size are stored as JSON, larger ones compressed
# Of compressed body (base64): sealed and base64-encoded once more (x 4/3) it stays well inside DynamoDB's
# 400 KB item with the other fields.
MAX_STORED_BYTES = 220_000


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    replayed: bool


class Sealing(Protocol):
    """Seals a stored response under its session's content key (session_service.services.content_keys), so
    that a record outliving its session's teardown is as unreadable as the session's other content."""

    def seal(self, session_id: str, payload: dict[str, Any]) -> bytes: ...

    def open(self, session_id: str, sealed: bytes) -> dict[str, Any]:
        """NotFound when the session is deleted or its key is gone."""

    def require_live(self, session_id: str) -> None:
        """NotFound when the session is deleted: a deleted session's paths are 404 before anything else."""


class StoredResponse(BaseIdempotencySerializer):
    """`{"status", "body"}` to what the record keeps, and back. With `sealing`, the stored body is sealed
    under the key of the route's session (`session_id`, or for a create the `id` of the body)."""

    def __init__(self, sealing: Sealing | None = None, session_id: str | None = None) -> None:
        self._sealing = sealing
        self._session_id = session_id

    def to_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        stored = self._stored(data)
        session_id = self._session_id or (data["body"] or {}).get("id")
        if self._sealing is None or not isinstance(session_id, str):
            return stored
        sealed = self._sealing.seal(session_id, stored)
        return {
            "status": data["status"],
            "session_id": session_id,
            "sealed": base64.b64encode(sealed).decode(),
        }

    def _stored(self, data: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(data["body"], separators=(",", ":"))  # as the resolver serialises it
        if len(text) <= PLAIN_LIMIT:
            return {"status": data["status"], "json": text}  # text: a replay keeps the first's key order
        packed = _pack(text)
        body = json.loads(text)  # a copy: the first response itself goes out whole
        while len(packed) > MAX_STORED_BYTES and _cut_longest_string(body):
            packed = _pack(json.dumps(body, separators=(",", ":")))
        return {"status": data["status"], "gzip": packed}

    def from_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        if "sealed" in data:
            if self._sealing is None:
                raise RuntimeError("a sealed idempotency record, and no sealing configured")
            data = self._sealing.open(data["session_id"], base64.b64decode(data["sealed"]))
        if "gzip" in data:
            return {
                "status": data["status"],
                "body": json.loads(gzip.decompress(base64.b64decode(data["gzip"]))),
            }
        return {"status": data["status"], "body": json.loads(data["json"])}


def _pack(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=5)).decode()


def _cut_longest_string(body: Any) -> bool:
    """Halve the longest string in `body` (in place); False when there is nothing left worth cutting."""
    longest: tuple[int, Any, Any] = (0, None, None)  # (length, container, key)
    stack = [body]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(value, str) and len(value) > longest[0]:
                longest = (len(value), node, key)
            elif isinstance(value, dict | list):
                stack.append(value)
    length, container, key = longest
    if length < 1024:
        return False
    container[key] = container[key][: length // 2]
    if isinstance(container, dict) and f"{key}_truncated" in container:
        container[f"{key}_truncated"] = True
    return True


def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    """Powertools' response hook: called only when the response comes from the store."""
    return {**response, "replayed": True}


class PowertoolsIdempotency:
    def __init__(self, settings: Settings) -> None:
        if not settings.idempotency_table:
            raise RuntimeError("IDEMPOTENCY_TABLE is not configured for this function")
        self._table = settings.idempotency_table
        self._ttl = settings.idempotency_ttl_seconds
        # The same time budget as the other DynamoDB calls (session_service.settings).
        self._client = aws_client(
            "dynamodb",
            settings,
            connect=settings.dynamodb_connect_timeout_seconds,
            read=settings.dynamodb_read_timeout_seconds,
            attempts=settings.dynamodb_max_retries + 1,
        )
        self._stores: dict[str, DynamoDBPersistenceLayer] = {}

    @staticmethod
    def _require_live(sealing: Sealing | None, session_id: str | None) -> None:
        """A deleted session's paths are 404, whatever its keys' records say (reused, in progress)."""
        if sealing is not None and session_id is not None:
            sealing.require_live(session_id)

    def _store(self, route: str) -> DynamoDBPersistenceLayer:
        """One persistence layer per route (a route's key prefix never changes, so it is safe to share)."""
        if route not in self._stores:
            self._stores[route] = DynamoDBPersistenceLayer(table_name=self._table, boto3_client=self._client)
        return self._stores[route]

    def run(
        self,
        *,
        route: str,
        project_id: str,
        key: str,
        request: dict[str, Any],
        work: Work,
        lambda_context: Any,
        sealing: Sealing | None = None,
        session_id: str | None = None,
    ) -> Outcome:
        config = IdempotencyConfig(
            event_key_jmespath="[project_id, key]",
            payload_validation_jmespath="request",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=self._ttl,
            hash_function="sha256",
            response_hook=_replayed,
        )
        if lambda_context is not None:
            config.register_lambda_context(lambda_context)  # INPROGRESS ends with this invocation's deadline
        done: list[dict[str, Any]] = []

        @idempotent_function(
            data_keyword_argument="call",
            persistence_store=self._store(route),
            config=config,
            output_serializer=StoredResponse(sealing, session_id),
            key_prefix=route,
        )
        def once(call: dict[str, Any]) -> dict[str, Any]:
            body, status = work()
            done.append({"status": status, "body": body})
            return done[-1]

        try:
            response = once(call={"project_id": project_id, "key": key, "request": request})
        except IdempotencyValidationError as error:
            self._require_live(sealing, session_id)
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request; use a new key for a new request"
            ) from error
        except IdempotencyAlreadyInProgressError as error:
            self._require_live(sealing, session_id)
            raise IdempotencyInProgress(
                "a request with this Idempotency-Key is still running; retry once it has finished"
            ) from error
        except IdempotencyPersistenceLayerError as error:
            if done:  # the work ran; only recording its result failed
                logger.warning("idempotency record not completed", extra={"error": str(error)})
                count("IdempotencyRecordErrors")
                response = done[-1]
            else:
                logger.warning("idempotency store unavailable", extra={"error": str(error)})
                count("IdempotencyStoreErrors")
                raise DependencyUnavailable(
                    "the idempotency store is unavailable; retry the request"
                ) from error
        replayed = bool(response.get("replayed"))
        if replayed:
            count("IdempotentReplays")
        return Outcome(status=int(response["status"]), body=response["body"], replayed=replayed)
