"""Two identical deliveries at the same moment store one row: the database decides."""

import json
import threading

import pytest
from django.db import connection
from django.utils import timezone

from receivers.models import Event
from receivers.providers import get_provider
from receivers.providers.base import CaseInsensitiveDict, Incoming
from receivers.services import receive
from receivers.tests.factories import make_source

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SENDERS = 8


def test_concurrent_identical_deliveries_store_one_row():
    source, _ = make_source("gridx")
    body = json.dumps({"id": "same-event", "type": "ev/plugged", "data": {}}).encode()
    signed = get_provider("gridx").sign(body, source.secrets.get().value, source, timezone.now())
    incoming = Incoming(body=body, headers=CaseInsensitiveDict(signed.headers))
    barrier = threading.Barrier(SENDERS)
    outcomes = []

    def sender():
        try:
            barrier.wait()
            outcomes.append(receive(source.slug, incoming))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [o.status for o in outcomes] == [200] * SENDERS
    assert sum(not o.duplicate for o in outcomes) == 1
    event = Event.objects.get()
    assert event.duplicates == SENDERS - 1
