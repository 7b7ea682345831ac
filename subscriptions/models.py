"""Who gets which events, and the record of every delivery and attempt."""

import fnmatch

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from receivers.models import Event, Source, generate_secret, mask

from .options import (
    MAX_EXPIRE_SECONDS,
    validate_coalesce,
    validate_expiry_by_type,
    validate_filter,
    validate_path,
)

MAX_TIMEOUT_SECONDS = 60

# The name the migrations refer to.
generate_signing_secret = generate_secret


class PayloadFormat(models.TextChoices):
    ORIGINAL = "original", "Original body as received"
    CLOUDEVENTS = "cloudevents", "CloudEvents 1.0 JSON envelope"


class Priority(models.TextChoices):
    HIGH = "high", "High: drained from its own queue by its own workers"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low: drained when no normal work waits"


class Subscription(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, help_text="http or https target.")
    is_active = models.BooleanField(
        default=True, help_text="Off: no new deliveries are created (disabled or stopped)."
    )
    is_paused = models.BooleanField(
        default=False,
        help_text="Paused: deliveries are still created and wait; nothing is sent until resumed.",
    )
    event_types = models.JSONField(
        default=list,
        blank=True,
        help_text='Exact types or globs, e.g. ["appliance/*", "session.*"]; "*" is everything.',
    )
    sources = models.ManyToManyField(
        Source,
        blank=True,
        related_name="subscriptions",
        help_text="Leave empty to receive from every source.",
    )
    secret = models.CharField(max_length=200, default=generate_signing_secret)
    previous_secret = models.CharField(max_length=200, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="Static headers to add.")
    timeout_seconds = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)]
    )
    payload_format = models.CharField(
        max_length=20, choices=PayloadFormat.choices, default=PayloadFormat.ORIGINAL
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Energy options (subscriptions/options.py, docs/energy.md); all off by default.
    priority = models.CharField(
        max_length=10,
        choices=Priority.choices,
        default=Priority.NORMAL,
        help_text="High needs a worker consuming the `high` queue (docs/energy.md).",
    )
    expire_after = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_EXPIRE_SECONDS)],
        help_text="Seconds: a delivery whose event is older is not sent (it becomes expired).",
    )
    expire_after_by_type = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_expiry_by_type],
        help_text='Seconds per event type or glob, e.g. {"grid-signal-processor/*": 300}; '
        "the shortest matching one wins over expire_after.",
    )
    ordering_key = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_path],
        help_text="A JSON path, e.g. data.evseId: deliveries with the same value go out in "
        "received order, and a failing one holds back only its own.",
    )
    coalesce = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_coalesce],
        help_text='Rules like [{"types": ["ev/measurement"], "key": "data.applianceID"}]: of '
        "the waiting deliveries with the same key only the newest is sent.",
    )
    filter = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_filter],
        help_text='Rules, all of which must hold: [{"path": "data.siteId", "op": "equals", '
        '"value": "north"}]; op: equals, in, exists, gt, gte, lt, lte.',
    )
    # Health, kept by the delivery service.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # One drainer at a time per subscription (see services.drain_subscription); a hung
    # subscriber then occupies one worker thread, never all of them.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set after a timeout or connection error: a dead target is not hammered meanwhile.
    backoff_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def matches(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)

    @property
    def masked_secret(self) -> str:
        return mask(self.secret)

    def signing_secrets(self, now=None) -> list[str]:
        now = now or timezone.now()
        keys = [self.secret]
        if self.previous_secret and (
            self.previous_secret_expires_at is None or self.previous_secret_expires_at > now
        ):
            keys.append(self.previous_secret)
        return keys


# Kept by the delivery service, never edited by hand (read-only in the API and the admin).
HEALTH_FIELDS = (
    "last_success_at",
    "last_failure_at",
    "consecutive_failures",
    "failing_since",
    "disabled_at",
    "disabled_reason",
)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Waiting to retry"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Ended unsent: the event outlived the subscription's expiry, or a newer one replaced it.
    EXPIRED = "expired", "Expired (not sent)"
    SUPERSEDED = "superseded", "Superseded by a newer event (not sent)"


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
# Ended without being sent; replayed only on an explicit request.
UNSENT_STATUSES = (DeliveryStatus.EXPIRED, DeliveryStatus.SUPERSEDED)


class Delivery(models.Model):
    event = models.ForeignKey(Event, related_name="deliveries", on_delete=models.CASCADE)
    subscription = models.ForeignKey(
        Subscription, related_name="deliveries", on_delete=models.CASCADE
    )
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    # Stable across retries and replays: the receiver's dedupe key (Standard Webhooks).
    webhook_id = models.CharField(max_length=64)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    replay_requested = models.BooleanField(default=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Set at fan-out for subscriptions with the options (subscriptions/options.py), else empty.
    order_key = models.CharField(max_length=255, blank=True)
    coalesce_key = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        permissions = [("replay_delivery", "Can replay deliveries")]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscription"], name="delivery_unique_per_subscription"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["subscription", "status", "id"], name="delivery_sub_status_idx"),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created_idx"),
            models.Index(fields=["-created_at", "-id"], name="delivery_created_idx"),
            models.Index(fields=["webhook_id"], name="delivery_webhook_id_idx"),
            # Partial: plain deliveries (null keys) cost these indexes nothing.
            models.Index(
                fields=["subscription", "coalesce_key", "event"],
                condition=~models.Q(coalesce_key=""),
                name="delivery_coalesce_idx",
            ),
            models.Index(
                fields=["subscription", "expires_at"],
                condition=models.Q(expires_at__isnull=False, status__in=["pending", "retrying"]),
                name="delivery_expiry_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} to {self.subscription_id}"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, related_name="attempts", on_delete=models.CASCADE)
    started_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    is_replay = models.BooleanField(default=False)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["started_at"], name="attempt_started_idx")]

    def __str__(self) -> str:
        return f"attempt {self.pk} of {self.delivery_id}"
