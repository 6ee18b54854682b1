"""The cache epoch's rules with a fake store and a fake clock: when a process re-reads it, when a writer
raises it, and that an unknown epoch means 'trust nothing'."""

import pytest

from fakes import FakeEpochStore
from session_service.services.cache_epoch import CacheEpoch


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)
        self.mono += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def epoch_for(store: FakeEpochStore, clock: Clock, copy: int = 0) -> CacheEpoch:
    return CacheEpoch(
        store,
        copies=len(store.values),
        refresh_seconds=1.0,
        margin_ms=2000,
        monotonic=lambda: clock.mono,
        copy=copy,
    )


def test_a_reader_rereads_the_epoch_at_most_once_a_second(clock: Clock) -> None:
    store = FakeEpochStore()
    reader = epoch_for(store, clock)
    assert [reader.current() for _ in range(100)] == [0] * 100
    assert store.reads == 1
    clock.advance(1.0)
    reader.current()
    assert store.reads == 2


def test_a_failed_write_raises_every_copy_past_its_commit(clock: Clock) -> None:
    store = FakeEpochStore(copies=3)
    writer, reader = epoch_for(store, clock), epoch_for(store, clock, copy=2)
    assert reader.current() == 0
    assert writer.invalidate_before(clock.ms) is True
    assert store.values == [clock.ms + 2000] * 3
    assert reader.current() == 0  # within its second: not yet re-read...
    reader.suspect()  # ...unless Redis failed it meanwhile
    assert reader.current() == clock.ms + 2000


def test_a_writer_covered_by_a_known_epoch_does_not_write_again(clock: Clock) -> None:
    store = FakeEpochStore()
    writer = epoch_for(store, clock)
    writer.invalidate_before(clock.ms)
    clock.advance(0.5)
    writer.invalidate_before(clock.ms)  # still covered with half the margin to spare
    assert store.writes == 1
    clock.advance(0.6)
    writer.invalidate_before(clock.ms)
    assert store.writes == 2


def test_an_epoch_that_cannot_be_read_trusts_nothing_and_never_goes_down(clock: Clock) -> None:
    store = FakeEpochStore()
    reader = epoch_for(store, clock)
    store.values = [5000] * 4
    assert reader.current() == 5000
    clock.advance(2)
    store.down = True
    assert reader.current() is None
    store.down = False
    store.values = [10] * 4  # a lower value (e.g. an old copy) never lowers what the process knows
    assert reader.current() == 5000


def test_a_failed_epoch_write_is_reported(clock: Clock) -> None:
    store = FakeEpochStore()
    store.down = True
    assert epoch_for(store, clock).invalidate_before(clock.ms) is False
