"""Storing events: one INSERT for many, and the fast path's writer that batches them.

The database tests check insert_events, the write both paths use, on SQLite and PostgreSQL.
The writer tests drive receivers.fastpath.batches with real threads, a real event loop and
requests made as an ASGI server makes them; concurrency is forced with events, never with sleeps.
"""

import asyncio
import json
import threading
import time

import pytest
from django.db import OperationalError, connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receivers.fastpath import batches
from receivers.fastpath.batches import BatchWriter, Job, answer_jobs
from receivers.lookup import cached_source, forget_sources
from receivers.models import Event, Source
from receivers.storage import MAX_BATCH, NewEvent, bounded_transaction, insert_events
from receivers.tests.factories import EventFactory, SourceFactory, make_source
from receivers.tests.webhooks import gridx_body, sign

# Generous: every wait in these tests ends on an event long before this, it only stops a
# broken implementation from hanging the suite.
WAIT = 10


# The writer thread -----------------------------------------------------------------------


def job(number: int, loop=None, future=None) -> Job:
    return Job({}, b"", str(number), "", loop, future)


def test_requests_waiting_together_make_one_batch_and_each_gets_its_own_answer():
    batches_seen, release, first_taken = [], threading.Event(), threading.Event()

    def answer(jobs):
        batches_seen.append([j.slug for j in jobs])
        first_taken.set()
        assert release.wait(WAIT)
        for j in jobs:
            j.answer = f"answer {j.slug}"

    async def run():
        loop = asyncio.get_running_loop()
        writer = BatchWriter(answer)
        jobs = [job(n, loop, loop.create_future()) for n in range(6)]
        writer.submit(jobs[0])
        await loop.run_in_executor(None, first_taken.wait, WAIT)
        # These queue up while the first batch is written: the next batch takes them all.
        for j in jobs[1:]:
            writer.submit(j)
        release.set()
        answers = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), WAIT)
        writer.stop()
        writer.thread.join(WAIT)
        return answers

    answers = asyncio.run(run())
    assert answers == [f"answer {n}" for n in range(6)]
    assert batches_seen == [["0"], ["1", "2", "3", "4", "5"]]


def test_a_batch_never_exceeds_max_batch():
    writer = BatchWriter(lambda jobs: None)
    for n in range(MAX_BATCH + 5):
        writer.jobs.put(job(n))
    assert [len(writer.take()), len(writer.take())] == [MAX_BATCH, 5]


def test_an_abandoned_request_is_not_stored():
    seen = []

    def answer(jobs):
        seen.extend(j.slug for j in jobs)
        for j in jobs:
            j.answer = "stored"

    async def run():
        loop = asyncio.get_running_loop()
        writer = BatchWriter(answer)
        gone, kept = (job(n, loop, loop.create_future()) for n in (1, 2))
        gone.abandoned = True  # the loop answered it 503 already
        writer.jobs.put(gone)
        writer.submit(kept)
        await asyncio.wait_for(kept.future, WAIT)
        writer.stop()
        writer.thread.join(WAIT)
        return gone.future.done()

    assert asyncio.run(run()) is False
    assert seen == ["2"]


def test_a_bug_in_the_writer_still_answers_every_request_500():
    def broken(jobs):
        raise RuntimeError("a bug")

    async def run():
        loop = asyncio.get_running_loop()
        writer = BatchWriter(broken)
        jobs = [job(n, loop, loop.create_future()) for n in range(3)]
        for j in jobs:
            writer.submit(j)
        answers = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), WAIT)
        writer.stop()
        return answers

    assert [a.status for a in asyncio.run(run())] == [500, 500, 500]


# answer_jobs: verify each, store together (every database) ---------------------------------


def request_job(source, secret: str, body: bytes) -> Job:
    signed = sign(source, body, secret)
    environ = (
        RequestFactory()
        .post(
            f"/hooks/{source.slug}/", body, content_type="application/json", headers=signed.headers
        )
        .environ
    )
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in signed.headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": environ["PATH_INFO"],
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    return Job(scope, body, source.slug, "", None, None)


def statuses(jobs) -> list[int]:
    return [j.answer.status for j in jobs]


@pytest.mark.django_db(transaction=True)
def test_requests_of_a_batch_are_stored_with_one_write_and_answered_in_order(monkeypatch):
    forget_sources()
    source, (secret,) = make_source("gridx")
    Event.objects.create(source=source, external_id="seen", type="t", raw_body=b"{}")
    writes = []
    insert_rows = batches.insert_rows
    monkeypatch.setattr(
        batches, "insert_rows", lambda e, r: writes.append(len(e)) or insert_rows(e, r)
    )
    jobs = [
        request_job(source, secret, gridx_body(id="new-1")),
        request_job(source, "wrong secret", gridx_body(id="forged")),
        request_job(source, secret, gridx_body(id="seen")),
        request_job(source, secret, gridx_body(id="twice")),
        request_job(source, secret, gridx_body(id="twice")),
    ]

    answer_jobs(jobs)

    assert writes == [4]
    assert statuses(jobs) == [200, 401, 200, 200, 200]
    assert [json.loads(j.answer.body).get("duplicate") for j in jobs] == [
        False,
        None,
        True,
        False,
        True,
    ]
    stored = dict(Event.objects.values_list("external_id", "duplicates"))
    assert stored == {"seen": 1, "new-1": 0, "twice": 1}


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_answers_every_request_of_the_batch_503(monkeypatch):
    forget_sources()
    source, (secret,) = make_source("gridx")

    def gone(events, rows):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(batches, "insert_rows", gone)
    jobs = [request_job(source, secret, gridx_body(id=f"lost-{n}")) for n in range(3)]

    answer_jobs(jobs)

    assert statuses(jobs) == [503, 503, 503]
    assert all((b"retry-after", b"30") in j.answer.headers for j in jobs)
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_source_was_just_deleted_fails_alone():
    forget_sources()
    kept, (kept_secret,) = make_source("gridx")
    gone, (gone_secret,) = make_source("gridx")
    cached_source(gone.slug)  # still cached when its row is deleted
    Source.objects.filter(pk=gone.pk).delete()
    jobs = [
        request_job(gone, gone_secret, gridx_body(id="orphan")),
        request_job(kept, kept_secret, gridx_body(id="kept")),
    ]

    answer_jobs(jobs)

    assert statuses(jobs) == [404, 200]
    assert list(Event.objects.values_list("external_id", flat=True)) == ["kept"]


@pytest.mark.django_db(transaction=True)
def test_an_error_that_is_not_the_databases_fails_only_its_own_event(monkeypatch, caplog):
    forget_sources()
    source, (secret,) = make_source("gridx")
    row_values = batches.row_values

    def fussy(event):
        if event.external_id == "odd":
            raise ValueError("cannot encode this one")
        return row_values(event)

    monkeypatch.setattr(batches, "row_values", fussy)
    jobs = [request_job(source, secret, gridx_body(id=name)) for name in ("a", "odd", "b")]

    answer_jobs(jobs)

    assert statuses(jobs) == [200, 500, 200]
    assert sorted(Event.objects.values_list("external_id", flat=True)) == ["a", "b"]
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_deep_bodies_among_genuine_ones_fail_alone_with_400():
    forget_sources()
    source, (secret,) = make_source("gridx")
    deep = b'{"id": "deep", "type": "t", "data": ' + b"[" * 970 + b"]" * 970 + b"}"
    jobs = [
        request_job(source, secret, gridx_body(id="genuine-1")),
        request_job(source, secret, deep),
        request_job(source, secret, gridx_body(id="genuine-2")),
    ]

    answer_jobs(jobs)

    assert statuses(jobs) == [200, 400, 200]
    assert sorted(Event.objects.values_list("external_id", flat=True)) == [
        "genuine-1",
        "genuine-2",
    ]


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


# Bounds on the receive path's statements (issue 11, item 16) --------------------------------


def in_thread(function):
    """Run function in a thread of its own (its own connection, closed after)."""
    result = {}

    def run():
        try:
            result["value"] = function()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return result["value"]


def show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_receive_path_statements_are_bounded_on_both_paths():
    def writer_session():
        batches.bound_statements()
        return show("statement_timeout"), show("lock_timeout")

    def plain_transaction():
        with bounded_transaction():
            inside = show("statement_timeout"), show("lock_timeout")
        return inside, show("statement_timeout")

    assert in_thread(writer_session) == ("3s", "2s")
    assert in_thread(plain_transaction) == (("3s", "2s"), "0")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_source_row_locked_elsewhere_gives_503_within_the_lock_timeout():
    forget_sources()
    source, (secret,) = make_source("gridx")
    jobs = [request_job(source, secret, gridx_body(id="behind-a-lock"))]
    with transaction.atomic():
        # An admin saving the source: the INSERT's foreign key check waits for this lock.
        Source.objects.select_for_update().get(pk=source.pk)
        started = time.monotonic()
        in_thread(lambda: answer_jobs(jobs))
        waited = time.monotonic() - started
    assert statuses(jobs) == [503]
    assert waited < 5
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_the_insert_goes_through_djangos_cursor_wrapper():
    source = SourceFactory()
    with CaptureQueriesContext(connection) as queries:
        insert_events([unsaved(source, "seen-by-django")])
    assert any(q["sql"].startswith("INSERT INTO") for q in queries.captured_queries)
