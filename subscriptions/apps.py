from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Relaying"

    def ready(self) -> None:
        from receivers.signals import event_stored

        # Registered with Celery in every process, for subscriptions.work to name them.
        from . import tasks  # noqa: F401
        from .dispatch import on_event_stored

        # Receiving says an event is stored; relaying fans it out. The one hook between them.
        event_stored.connect(on_event_stored, dispatch_uid="subscriptions-fan-out")
