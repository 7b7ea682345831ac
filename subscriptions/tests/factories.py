import factory

from subscriptions.models import Subscription


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    name = factory.Sequence(lambda n: f"service-{n}")
    url = "http://127.0.0.1:9/hook"
    event_types = factory.LazyFunction(lambda: ["*"])
    timeout_seconds = 5
