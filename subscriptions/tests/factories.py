import json

import factory
from django.utils import timezone

from receivers.models import Event
from receivers.tests.factories import SourceFactory
from subscriptions.models import Subscription


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    name = factory.Sequence(lambda n: f"service-{n}")
    url = "http://127.0.0.1:9/hook"
    event_types = factory.LazyFunction(lambda: ["*"])
    timeout_seconds = 5


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = factory.SubFactory(SourceFactory)
    external_id = factory.Sequence(lambda n: f"evt-{n}")
    type = "appliance/online"
    payload = factory.LazyAttribute(lambda o: {"id": o.external_id, "type": o.type, "data": {}})
    raw_body = factory.LazyAttribute(lambda o: json.dumps(o.payload).encode())
    headers = factory.LazyFunction(lambda: {"content-type": "application/json"})
    received_at = factory.LazyFunction(timezone.now)
