"""Events stored before the nesting cap (issue 11, item 2) never give a 500 in the API or admin.

Such a payload parses and encodes at the top of a stack, but not deep inside a request's:
the API and the admin must show these events all the same.
"""

import pytest
from django.db import connection

from receivers.models import Event
from receivers.tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

DEPTH = 990


@pytest.fixture
def deep_event():
    text = "[" * DEPTH + "]" * DEPTH
    event = Event.objects.create(
        source=SourceFactory(), external_id="deep", type="t", raw_body=text.encode()
    )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE receivers_event SET payload = %s WHERE id = %s", [text, event.pk])
    return event


def test_the_api_shows_a_deep_event(admin_client, deep_event):
    listed = admin_client.get("/api/v1/events/")
    assert listed.status_code == 200
    shown = admin_client.get(f"/api/v1/events/{deep_event.pk}/")
    assert shown.status_code == 200
    assert shown.json()["external_id"] == "deep"


def test_the_admin_shows_a_deep_event(admin_client, deep_event):
    assert admin_client.get("/admin/receivers/event/").status_code == 200
    page = admin_client.get(f"/admin/receivers/event/{deep_event.pk}/change/")
    assert page.status_code == 200
