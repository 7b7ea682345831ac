"""Read-only queries about subscriptions and deliveries, for the services, the admin and the API."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from receivers.models import Event, Source
from receivers.providers import INTERNAL

from .models import OPEN_STATUSES, Delivery, DeliveryStatus, Subscription

# Deliveries still to be sent, the one being sent included.
BACKLOG_STATUSES = (*OPEN_STATUSES, DeliveryStatus.SENDING)


def active_subscriptions() -> list[tuple[Subscription, set[int]]]:
    # Fan-out never signs: the signing secrets stay in the database, undecrypted.
    subscriptions = (
        Subscription.objects.filter(is_active=True)
        .defer("secret", "previous_secret")
        .prefetch_related("sources")
    )
    return [(sub, {source.pk for source in sub.sources.all()}) for sub in subscriptions]


def internal_source_ids() -> set[int]:
    """The hub's own source: its events go only to subscriptions that choose it by name."""
    return set(Source.objects.filter(provider__in=INTERNAL).values_list("pk", flat=True))


def failed_delivery_ids(**filters) -> list[int]:
    return list(
        Delivery.objects.filter(status=DeliveryStatus.FAILED, **filters).values_list(
            "pk", flat=True
        )
    )


def due_deliveries(now: datetime) -> QuerySet[Delivery]:
    """Deliveries whose next attempt is due, to subscriptions that are neither off nor paused."""
    return Delivery.objects.filter(
        status__in=OPEN_STATUSES,
        next_attempt_at__lte=now,
        subscription__is_active=True,
        subscription__is_paused=False,
    )


def has_due(subscription_id: int) -> bool:
    return (
        due_deliveries(timezone.now())
        .filter(subscription_id=subscription_id)
        .filter(
            Q(subscription__backoff_until__isnull=True)
            | Q(subscription__backoff_until__lte=timezone.now())
        )
        .exists()
    )


def with_backlog(subscriptions: QuerySet[Subscription]) -> QuerySet[Subscription]:
    """Each subscription annotated with `open_count`, its deliveries still to be sent."""
    open_count = (
        Delivery.objects.filter(subscription=OuterRef("pk"), status__in=BACKLOG_STATUSES)
        .order_by()
        .values("subscription")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return subscriptions.annotate(open_count=Coalesce(Subquery(open_count), 0))


def event_deliveries(event: Event) -> list[Delivery]:
    """An event's deliveries with their subscriptions and attempts, oldest first."""
    return list(
        event.deliveries.select_related("subscription").prefetch_related("attempts").order_by("pk")
    )


def failed_count(subscription: Subscription) -> int:
    return subscription.deliveries.filter(status=DeliveryStatus.FAILED).count()
