"""Group commit: concurrent stores share one write, each caller gets its own answer.

The unit tests drive GroupCommit with a fake `write` and real threads; concurrency is forced
with barriers, events and the group's own condition, never with sleeps. The database tests
check insert_events, the write the hub really uses, on SQLite and PostgreSQL.
"""

import threading
import time

import pytest
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from receivers.group_commit import GroupCommit, NewEvent, insert_events
from receivers.models import Event
from receivers.tests.factories import EventFactory, SourceFactory

THREADS = 6
# Generous: every wait in these tests ends on an event long before this, it only stops a
# broken implementation from hanging the suite.
WAIT = 10


class FakeWrite:
    """Records every batch; the id of an event is its external_id as an int."""

    def __init__(self, fail_on=None, error=None, hold_first: threading.Event | None = None):
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.error = error
        self.hold_first = hold_first
        self.first_started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, events):
        with self.lock:
            self.batches.append([e.external_id for e in events])
            first = len(self.batches) == 1
        if first and self.hold_first is not None:
            self.first_started.set()
            assert self.hold_first.wait(WAIT), "the test never released the first write"
        if self.error is not None:
            raise self.error
        if self.fail_on is not None and any(e.external_id == self.fail_on for e in events):
            raise IntegrityError("insert or update violates foreign key constraint")
        return [int(e.external_id) for e in events]


def event(number: int) -> Event:
    # Never saved: the fake write only reads external_id.
    return Event(external_id=str(number), type="t")


def start_threads(target, count: int = THREADS):
    """Start target(i) in `count` threads; results and exceptions fill in by thread index."""
    results, errors = {}, {}

    def runner(i):
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results, errors


def join_all(threads) -> None:
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads), "a store() never returned"


def run_threads(target, count: int = THREADS) -> tuple[dict, dict]:
    threads, results, errors = start_threads(target, count)
    join_all(threads)
    return results, errors


def announced_stores(group: GroupCommit, count: int = THREADS):
    """Every thread announces itself before any stores: the writer waits for all of them."""
    barrier = threading.Barrier(count)

    def request(i):
        with group.expecting() as arrival:
            barrier.wait(WAIT)
            return group.store(event(i + 1), arrival)

    return run_threads(request, count)


def test_concurrent_stores_share_writes_and_each_gets_its_own_id():
    release = threading.Event()
    write = FakeWrite(hold_first=release)
    group = GroupCommit(write=write, gather_seconds=0)

    def request(i):
        return group.store(event(i + 1))

    threads, results, errors = start_threads(request)
    # The first writer is inside write(); the others queue up behind it.
    assert write.first_started.wait(WAIT)
    with group.condition:
        assert group.condition.wait_for(lambda: len(group.queue) == THREADS - 1, WAIT)
    release.set()
    join_all(threads)

    assert not errors
    assert results == {i: i + 1 for i in range(THREADS)}
    # One write for the first, one for all those that queued meanwhile.
    assert [len(batch) for batch in write.batches] == [1, THREADS - 1]
    assert len(write.batches) < THREADS
    assert sorted(e for batch in write.batches for e in batch) == sorted(
        str(i + 1) for i in range(THREADS)
    )
    assert (group.writing, group.queue, group.coming) == (False, [], 0)


def test_announced_requests_are_written_in_one_batch():
    write = FakeWrite()
    group = GroupCommit(write=write, gather_seconds=WAIT)
    results, errors = announced_stores(group)
    assert not errors
    assert results == {i: i + 1 for i in range(THREADS)}
    assert len(write.batches) == 1
    assert sorted(write.batches[0], key=int) == [str(i + 1) for i in range(THREADS)]
    assert group.coming == 0


def test_the_gathering_writer_is_woken_once_not_per_arriving_request():
    write = FakeWrite()
    group = GroupCommit(write=write, gather_seconds=WAIT)
    notify = group.condition.notify
    wakes = []

    def counted(n: int = 1) -> None:
        wakes.append(len(group.queue))
        notify(n)

    group.condition.notify = counted
    results, errors = announced_stores(group)
    assert not errors and len(results) == THREADS
    assert len(write.batches) == 1
    # Woken by the last request to queue (or not at all, if all queued before it gathered).
    assert wakes in ([], [THREADS])


def test_a_database_error_fails_every_waiting_caller():
    write = FakeWrite(error=OperationalError("server closed the connection unexpectedly"))
    group = GroupCommit(write=write, gather_seconds=WAIT)
    results, errors = announced_stores(group)
    assert results == {}
    assert sorted(errors) == list(range(THREADS))
    assert all(type(exc) is OperationalError for exc in errors.values())
    assert {str(exc) for exc in errors.values()} == {"server closed the connection unexpectedly"}
    # Each thread raised its own copy, never one shared object.
    assert len({id(exc) for exc in errors.values()}) == THREADS
    assert len(write.batches) == 1
    assert (group.writing, group.queue, group.coming) == (False, [], 0)


def test_an_integrity_error_is_retried_per_event_so_only_the_bad_one_fails():
    bad = 3
    write = FakeWrite(fail_on=str(bad))
    group = GroupCommit(write=write, gather_seconds=WAIT)
    results, errors = announced_stores(group)
    assert list(errors) == [bad - 1]
    assert isinstance(errors[bad - 1], IntegrityError)
    assert results == {i: i + 1 for i in range(THREADS) if i + 1 != bad}
    # The whole batch once, then every event of it alone.
    assert len(write.batches[0]) == THREADS
    assert sorted(write.batches[1:], key=lambda b: int(b[0])) == [
        [str(i + 1)] for i in range(THREADS)
    ]


def test_an_integrity_error_of_a_lone_event_is_raised():
    write = FakeWrite(fail_on="1")
    group = GroupCommit(write=write)
    with pytest.raises(IntegrityError):
        group.store(event(1))
    assert write.batches == [["1"]]
    # The group is usable afterwards.
    assert group.store(event(2)) == 2


def test_expecting_without_a_store_leaves_nobody_coming():
    group = GroupCommit(write=FakeWrite())
    with group.expecting():
        assert group.coming == 1
    assert group.coming == 0
    with pytest.raises(ValueError), group.expecting():
        assert group.coming == 1
        raise ValueError("the request failed before it stored anything")
    assert group.coming == 0
    with group.expecting() as arrival:
        assert group.store(event(7), arrival) == 7
        assert group.coming == 0
    assert group.coming == 0


def test_a_request_that_gives_up_stops_the_writer_waiting_for_it():
    write = FakeWrite()
    group = GroupCommit(write=write, gather_seconds=WAIT)
    announced = threading.Event()
    give_up = threading.Event()

    def quitter():
        with group.expecting():
            announced.set()
            assert give_up.wait(WAIT)

    thread = threading.Thread(target=quitter)
    thread.start()
    assert announced.wait(WAIT)
    result = {}
    storer = threading.Thread(target=lambda: result.update(pk=group.store(event(5))))
    storer.start()
    # The writer now waits (gather) for the announced request, which never stores.
    with group.condition:
        assert group.condition.wait_for(lambda: group.writing, WAIT)
    assert write.batches == []
    give_up.set()
    thread.join(WAIT)
    storer.join(WAIT)
    assert not storer.is_alive()
    assert result == {"pk": 5}
    assert write.batches == [["5"]]
    assert group.coming == 0


def test_a_lone_store_does_not_wait_for_the_gather_bound():
    write = FakeWrite()
    group = GroupCommit(write=write, gather_seconds=5)
    started = time.monotonic()
    assert group.store(event(1)) == 1
    assert group.store(event(2)) == 2
    # A sanity bound, not a performance check: waiting for the gather bound would take 5 s.
    assert time.monotonic() - started < 4
    assert write.batches == [["1"], ["2"]]


def test_a_batch_never_exceeds_max_batch():
    release = threading.Event()
    write = FakeWrite(hold_first=release)
    group = GroupCommit(write=write, max_batch=2, gather_seconds=0)

    def request(i):
        return group.store(event(i + 1))

    threads, results, errors = start_threads(request, 5)
    assert write.first_started.wait(WAIT)
    with group.condition:
        assert group.condition.wait_for(lambda: len(group.queue) == 4, WAIT)
    release.set()
    join_all(threads)
    assert not errors
    assert results == {i: i + 1 for i in range(5)}
    assert [len(batch) for batch in write.batches] == [1, 2, 2]


# insert_events against the real database (SQLite, or PostgreSQL with DATABASE_URL).


def unsaved(source, external_id: str) -> Event:
    return EventFactory.build(source=source, external_id=external_id)


@pytest.mark.django_db
def test_insert_events_returns_an_id_per_new_event():
    source = SourceFactory()
    events = [unsaved(source, f"new-{i}") for i in range(3)]
    ids = insert_events(events)
    assert len(ids) == 3
    assert all(isinstance(pk, int) for pk in ids)
    assert len(set(ids)) == 3
    stored = dict(Event.objects.values_list("external_id", "pk"))
    assert stored == {f"new-{i}": pk for i, pk in enumerate(ids)}
    assert set(Event.objects.values_list("duplicates", flat=True)) == {0}


@pytest.mark.django_db
def test_insert_events_keeps_the_fields():
    source = SourceFactory()
    (pk,) = insert_events([unsaved(source, "fields-1")])
    stored = Event.objects.get(pk=pk)
    assert stored.source_id == source.pk
    assert stored.payload == {"id": "fields-1", "type": "appliance/online", "data": {}}
    assert bytes(stored.raw_body) == b'{"id": "fields-1", "type": "appliance/online", "data": {}}'
    assert stored.headers == {"content-type": "application/json"}


@pytest.mark.django_db
def test_a_new_event_is_stored_with_every_column():
    """NewEvent, what the receive endpoint writes, skips the model's fields on PostgreSQL:
    each column must still come back as the ORM would have stored it."""
    source = SourceFactory()
    received = timezone.now()
    new = NewEvent(
        source_id=source.pk,
        external_id="plain-1",
        type="ev/measurement",
        occurred_at=received - timezone.timedelta(seconds=3),
        received_at=received,
        headers={"content-type": "application/json", "x-signature": "****"},
        raw_body=b'{"id": "plain-1", "n": 1.5}',
        payload={"id": "plain-1", "n": 1.5, "nested": {"ok": [True, None]}},
        is_test=True,
        status="ignored",
    )
    without_payload = NewEvent(**{**vars_of(new), "external_id": "plain-2", "payload": None})
    first, second = insert_events([new, without_payload])
    stored = Event.objects.get(pk=first)
    assert (stored.source_id, stored.external_id, stored.type) == (
        source.pk,
        "plain-1",
        "ev/measurement",
    )
    assert stored.occurred_at == new.occurred_at and stored.received_at == received
    assert stored.headers == new.headers
    assert bytes(stored.raw_body) == new.raw_body
    assert stored.payload == new.payload
    assert (stored.is_test, stored.status, stored.duplicates) == (True, "ignored", 0)
    # None is SQL NULL, as the model's JSONField stores it, not a JSON null.
    assert Event.objects.filter(pk=second, payload__isnull=True).exists()


def vars_of(new: NewEvent) -> dict:
    return {name: getattr(new, name) for name in NewEvent.__slots__}


@pytest.mark.django_db
def test_two_identical_events_in_one_batch_store_one_row():
    source = SourceFactory()
    ids = insert_events([unsaved(source, "twice"), unsaved(source, "twice")])
    event = Event.objects.get()
    assert ids == [event.pk, None]
    assert event.duplicates == 1


@pytest.mark.django_db
def test_an_event_already_stored_is_a_duplicate():
    source = SourceFactory()
    (first,) = insert_events([unsaved(source, "again")])
    ids = insert_events([unsaved(source, "again"), unsaved(source, "other")])
    assert ids[0] is None
    assert isinstance(ids[1], int) and ids[1] != first
    assert Event.objects.get(external_id="again").duplicates == 1
    assert Event.objects.get(external_id="other").duplicates == 0


@pytest.mark.django_db
def test_the_same_external_id_of_another_source_is_not_a_duplicate():
    one, two = SourceFactory(), SourceFactory()
    ids = insert_events([unsaved(one, "shared"), unsaved(two, "shared")])
    assert None not in ids
    assert Event.objects.filter(external_id="shared").count() == 2


def test_an_error_that_cannot_be_copied_still_fails_every_waiting_caller():
    class Odd(Exception):
        def __init__(self, message, *, detail):
            super().__init__(message)
            self.detail = detail

    write = FakeWrite(error=Odd("odd", detail="x"))
    group = GroupCommit(write=write, gather_seconds=WAIT)
    results, errors = announced_stores(group)
    # Nobody is told the event was stored (None would be answered as a duplicate).
    assert results == {}
    assert sorted(errors) == list(range(THREADS))
