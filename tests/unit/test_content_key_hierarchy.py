"""The content-key hierarchy's rules with an in-memory keys table and KMS: how many calls a request costs,
how long a plaintext key stays in memory, a project key raced by two processes, and what opens what."""

from __future__ import annotations

import pytest

from fakes import FakeContentKeyStore, FakeMasterKey
from session_service.adapters.aesgcm import AesGcm
from session_service.services.content_keys import ContentKeys, ContentUnreadable, KeyDestroyed, PlainContent

P = "prj_a"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> tuple[FakeContentKeyStore, FakeMasterKey, Clock]:
    return FakeContentKeyStore(), FakeMasterKey(), Clock()


def process(world: tuple[FakeContentKeyStore, FakeMasterKey, Clock], ttl: float = 300.0) -> ContentKeys:
    store, master, clock = world
    return ContentKeys(store, master, aead=AesGcm, cache_seconds=ttl, clock=clock)


def create(keys: ContentKeys, store: FakeContentKeyStore, session_id: str) -> bytes:
    wrapped = keys.new_session_key(P, session_id)
    store.put_session_key(P, session_id, wrapped)
    return keys.seal(P, session_id, "metadata", {"session": session_id})


def test_a_warm_process_makes_no_kms_or_table_call(world) -> None:
    store, master, _ = world
    writer = process(world)
    sealed = create(writer, store, "ses_1")
    assert master.calls == ["generate"]  # the project's first key, once
    reader = process(world)
    assert reader.open(P, "ses_1", "metadata", sealed) == {"session": "ses_1"}
    assert master.calls == ["generate", "unwrap"] and store.calls.count("session_keys") == 1
    before = (len(master.calls), len(store.calls))
    for _ in range(50):
        reader.open(P, "ses_1", "metadata", sealed)
        reader.seal(P, "ses_1", "message:m1", "hello")
    assert (len(master.calls), len(store.calls)) == before  # warm: 0 KMS calls, 0 keys-table reads


def test_a_second_session_of_a_known_project_costs_no_kms_call(world) -> None:
    store, master, _ = world
    keys = process(world)
    create(keys, store, "ses_1")
    create(keys, store, "ses_2")
    assert master.calls == ["generate"]


def test_plaintext_keys_leave_memory_after_the_ttl(world) -> None:
    store, master, clock = world
    keys = process(world, ttl=300)
    sealed = create(keys, store, "ses_1")
    clock.now += 299
    keys.open(P, "ses_1", "metadata", sealed)
    assert store.calls.count("session_keys") == 0
    clock.now += 2  # past the TTL: read again (and the project key unwrapped again by KMS)
    keys.open(P, "ses_1", "metadata", sealed)
    assert store.calls.count("session_keys") == 1 and master.calls == ["generate", "unwrap"]


def test_a_destroyed_key_opens_nothing_in_a_new_process(world) -> None:
    store, _, _ = world
    sealed = create(process(world), store, "ses_1")
    store.destroy_session_key(P, "ses_1")
    with pytest.raises(KeyDestroyed):
        process(world).open(P, "ses_1", "metadata", sealed)
    with pytest.raises(KeyDestroyed):
        process(world).seal(P, "ses_1", "metadata", {})


def test_two_processes_racing_for_a_projects_first_key_agree_on_one(world) -> None:
    store, master, clock = world
    first = process(world)
    sealed = create(first, store, "ses_1")  # the first process made and stored the project's key...

    class LateReader(FakeContentKeyStore):
        """...after the second process had read 'no key yet'."""

        stale = True

        def project_key(self, project_id: str) -> bytes | None:
            if self.stale:
                self.stale = False
                return None
            return super().project_key(project_id)

    late = LateReader()
    late.items = store.items
    second = ContentKeys(late, master, aead=AesGcm, clock=clock)
    wrapped = second.new_session_key(P, "ses_2")  # its own GenerateDataKey loses the conditional put
    store.put_session_key(P, "ses_2", wrapped)
    assert master.calls == ["generate", "generate", "unwrap"]
    assert first.open(P, "ses_2", "metadata", second.seal(P, "ses_2", "metadata", {"x": 1})) == {"x": 1}
    assert second.open(P, "ses_1", "metadata", sealed) == {"session": "ses_1"}


def test_a_listing_reads_its_page_of_keys_in_one_call(world) -> None:
    store, _, _ = world
    sealed = {sid: create(process(world), store, sid) for sid in ("ses_1", "ses_2", "ses_3")}
    reader = process(world)
    reader.preload(P, ["ses_1", "ses_2", "ses_3", "ses_gone"])
    assert store.calls.count("session_keys") == 1
    assert [reader.open(P, sid, "metadata", blob)["session"] for sid, blob in sealed.items()] == list(sealed)
    assert store.calls.count("session_keys") == 1


def test_sealed_values_are_bound_to_their_session_and_purpose(world) -> None:
    store, _, _ = world
    keys = process(world)
    sealed = create(keys, store, "ses_1")
    create(keys, store, "ses_2")
    for session_id, purpose in (("ses_2", "metadata"), ("ses_1", "data_encryption_key")):
        with pytest.raises(ContentUnreadable):
            keys.open(P, session_id, purpose, sealed)


def test_plain_and_sealed_formats_never_cross(world) -> None:
    store, _, _ = world
    keys, plain = process(world), PlainContent()
    sealed = create(keys, store, "ses_1")
    with pytest.raises(ContentUnreadable):
        plain.open(P, "ses_1", "metadata", sealed)
    with pytest.raises(ContentUnreadable):  # a process with keys refuses unencrypted content (no downgrade)
        keys.open(P, "ses_1", "metadata", plain.seal(P, "ses_1", "metadata", {"x": 1}))
    assert plain.open(P, "ses_1", "metadata", plain.seal(P, "ses_1", "metadata", {"x": 1})) == {"x": 1}
