"""The stack's KMS key (ContentKey in template.yaml): it makes and unwraps the project keys of
session_service.services.content_keys. The project id is the encryption context, so a wrapped key only
unwraps for its own project (and CloudTrail shows which project's key was used)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from session_service.adapters.aws import aws_client
from session_service.domain.errors import DependencyUnavailable
from session_service.observability import logger
from session_service.settings import Settings


class KmsMasterKey:
    def __init__(self, settings: Settings) -> None:
        if not settings.content_key_id:
            raise RuntimeError("CONTENT_KEY_ID is not configured")
        self._key_id = settings.content_key_id
        # ≤ 2 x (0.5 + 1.5) s: a project key is fetched once per process every few minutes.
        self._client = aws_client("kms", settings, connect=0.5, read=1.5, attempts=2)

    def generate(self, project_id: str) -> tuple[bytes, bytes]:
        try:
            reply = self._client.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext={"project_id": project_id}
            )
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("generate_data_key", error) from error
        return bytes(reply["Plaintext"]), bytes(reply["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, project_id: str) -> bytes:
        try:
            reply = self._client.decrypt(
                KeyId=self._key_id, CiphertextBlob=wrapped, EncryptionContext={"project_id": project_id}
            )
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("decrypt", error) from error
        return bytes(reply["Plaintext"])

    @staticmethod
    def _unavailable(operation: str, error: Exception) -> DependencyUnavailable:
        logger.error("KMS call failed", extra={"operation": operation, "error": type(error).__name__})
        return DependencyUnavailable("the key service is unavailable; retry the request")
