"""Replays from the admin: the permission, the queueing, the admin log, the message."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest

from ..models import REPLAY_PERMISSION, Delivery
from ..services import replay

LOG_CHUNK = 1000


def can_replay(request: HttpRequest) -> bool:
    return request.user.has_perm(REPLAY_PERMISSION)


class ReplayPermissionMixin:
    """The `replay` permission of admin actions: subscriptions.replay_delivery."""

    def has_replay_permission(self, request):
        return can_replay(request)


def deliveries_text(count: int, failed: bool = False) -> str:
    noun = "delivery" if count == 1 else "deliveries"
    return f"{count} {'failed ' if failed else ''}{noun}"


def queue_and_report(
    request: HttpRequest, model_admin: admin.ModelAdmin, ids: list[int], failed: bool = False
) -> int:
    """Hand the replay to Celery, record it per delivery in the admin log, say how many."""
    count = replay.queue_replay(ids)
    log_replays(request, ids)
    model_admin.message_user(
        request, f"Queued {deliveries_text(count, failed)} for replay.", messages.SUCCESS
    )
    return count


def log_replays(request: HttpRequest, ids: list[int]) -> None:
    for start in range(0, len(ids), LOG_CHUNK):
        # Each entry is titled with the subscription's name: read it in the same query.
        chunk = (
            Delivery.objects.filter(pk__in=ids[start : start + LOG_CHUNK])
            .select_related("subscription")
            .only("pk", "webhook_id", "subscription__name")
        )
        LogEntry.objects.log_actions(request.user.pk, chunk, CHANGE, "Replayed.")
