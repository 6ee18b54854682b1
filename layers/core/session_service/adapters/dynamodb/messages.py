"""A session's messages in the messages table: its own partition (pk = "<project_id>#<session_id>"), so a
session is only ever addressed with its project, and a purge never touches another session.

Items: messages `sk = "m#<seq, 12 digits>"`, local-id claims `sk = "l#<local_id>"` (the seq they were given)
and the counter `sk = "#counter"` (`last_seq`). An append is one transaction: a check that the session is
live (the fence: nothing is written to a deleted session), the counter moved from the seq it was read at,
the message, and the local-id claim. A concurrent append moves the counter first and this one retries with
the next seq; a duplicate local id finds the claim and returns the original. So seqs are 1..N with no gap,
and a retried request never makes a second message or burns a seq.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors, live_session
from session_service.domain import keys
from session_service.domain.entities import Message
from session_service.domain.errors import Conflict, NotFound

COUNTER = "#counter"
_ATTEMPTS = 60


def message_sk(seq: int) -> str:
    return f"m#{seq:012d}"


def claim_sk(local_id: str) -> str:
    return f"l#{local_id}"


class DynamoMessageStore:
    def __init__(self, tables: Tables, *, sleep: Any = time.sleep) -> None:
        self._t = tables
        self._sleep = sleep

    @staticmethod
    def _to_message(item: Any) -> Message:
        return Message(
            project_id=item.project_id,
            session_id=item.session_id,
            message_id=item.message_id,
            seq=int(item.seq),
            content=None,  # sealed: the service opens it (session_service.services.content_keys)
            created_at=item.created_at,
            local_id=item.local_id,
            sealed_content=bytes(item.sealed_content),
        )

    def _get(self, partition: str, sk: str) -> Any:
        try:
            return self._t.MessageItem.get(partition, sk, consistent_read=True)
        except DoesNotExist:
            return None

    def append(
        self,
        project_id: str,
        session_id: str,
        sealed_content: bytes,
        local_id: str | None,
        *,
        message_id: str,
        at: str,
    ) -> tuple[Message, bool]:
        M, S = self._t.MessageItem, self._t.SessionItem
        partition = keys.audit_partition(project_id, session_id)
        for attempt in range(_ATTEMPTS):
            with dynamodb_errors("append_message"):
                if local_id is not None:
                    claim = self._get(partition, claim_sk(local_id))
                    if claim is not None:
                        original = self._get(partition, message_sk(int(claim.seq)))
                        if original is not None:
                            return self._to_message(original), False
                counter = self._get(partition, COUNTER)
                last = int(counter.last_seq) if counter is not None else 0
                seq = last + 1
                message = M(
                    session_key=partition,
                    sk=message_sk(seq),
                    message_id=message_id,
                    seq=seq,
                    local_id=local_id,
                    sealed_content=sealed_content,
                    created_at=at,
                    project_id=project_id,
                    session_id=session_id,
                )
                try:
                    with TransactWrite(
                        connection=self._t.connection, client_request_token=uuid.uuid4().hex
                    ) as tx:
                        tx.condition_check(
                            S,
                            keys.session_partition(project_id, session_id),
                            session_id,
                            condition=live_session(S),
                        )
                        moved = M(session_key=partition, sk=COUNTER)
                        from_last = M.last_seq.does_not_exist() if counter is None else M.last_seq == last
                        tx.update(moved, actions=[M.last_seq.set(seq)], condition=from_last)
                        tx.save(message, condition=M.sk.does_not_exist())
                        if local_id is not None:
                            tx.save(
                                M(
                                    session_key=partition,
                                    sk=claim_sk(local_id),
                                    seq=seq,
                                    message_id=message_id,
                                ),
                                condition=M.sk.does_not_exist(),
                            )
                except TransactWriteError as error:
                    reasons = [
                        reason.code if reason else None for reason in (error.cancellation_reasons or [])
                    ]
                    if reasons and reasons[0] == "ConditionalCheckFailed":
                        raise NotFound("session not found") from error
                    if not reasons or all(
                        code in (None, "None", "ConditionalCheckFailed", "TransactionConflict")
                        for code in reasons
                    ):
                        # Another append (or one with our local id) got there first: read again and retry.
                        self._sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))  # jitter
                        continue
                    raise
            return self._to_message(message), True
        raise Conflict("the session's messages kept changing; retry the request (with the same local_id)")

    def page(
        self, project_id: str, session_id: str, *, after_seq: int | None, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        M = self._t.MessageItem
        partition = keys.audit_partition(project_id, session_id)
        if before_seq is not None:
            condition = M.sk.between(message_sk(0), message_sk(before_seq - 1))
            forward = False
        else:
            condition = M.sk.between(message_sk((after_seq or 0) + 1), message_sk(10**12 - 1))
            forward = True
        with dynamodb_errors("list_messages"):
            found = list(
                M.query(
                    partition,
                    range_key_condition=condition,
                    scan_index_forward=forward,
                    limit=limit + 1,
                    page_size=limit + 1,
                    consistent_read=True,
                )
            )
        return [self._to_message(item) for item in found[:limit]], len(found) > limit

    def purge(self, project_id: str, session_id: str, limit: int) -> tuple[int, bool]:
        M = self._t.MessageItem
        partition = keys.audit_partition(project_id, session_id)
        with dynamodb_errors("purge_messages"):
            # Deleted items are gone from the partition, so each run's Query starts at what is left: it
            # never reads what an earlier run deleted.
            found = list(M.query(partition, limit=limit + 1, page_size=limit + 1, consistent_read=True))
            batch_items = found[:limit]
            with M.batch_write() as batch:
                for item in batch_items:
                    batch.delete(M(session_key=partition, sk=item.sk))
        purged = sum(1 for item in batch_items if item.sk.startswith("m#"))
        return purged, len(found) <= limit
