"""factory_boy factories for relaying's models."""

import factory

from receivers.tests.factories import DispatchedEventFactory
from subscriptions.models import Attempt, Delivery, DeliveryStatus, Subscription


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    name = factory.Sequence(lambda n: f"service-{n}")
    url = "http://127.0.0.1:9/hook"
    event_types = factory.LazyFunction(lambda: ["*"])
    timeout_seconds = 5


class AttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Attempt

    status_code = 500
    duration_ms = 12
    response_excerpt = "oops"


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A delivery that was tried: `attempts=(500, 502)` records one Attempt per status code."""

    class Meta:
        model = Delivery
        skip_postgeneration_save = True

    event = factory.SubFactory(DispatchedEventFactory)
    subscription = factory.SubFactory(SubscriptionFactory)
    status = DeliveryStatus.FAILED
    webhook_id = factory.Sequence(lambda n: f"msg_{n:08d}")

    @factory.post_generation
    def attempts(delivery, create, codes, **kwargs):
        codes = (500,) if codes is None else tuple(codes)
        for code in codes:
            AttemptFactory(delivery=delivery, status_code=code)
        delivery.attempt_count = len(codes)
        delivery.last_status_code = codes[-1] if codes else None
        if create:
            delivery.save(update_fields=["attempt_count", "last_status_code"])
