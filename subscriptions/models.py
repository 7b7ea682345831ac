"""Who gets which events, and the record of every delivery and attempt."""

import fnmatch

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from receivers.encryption import EncryptedTextField
from receivers.models import Event, Source, generate_secret, mask
from receivers.text import sendable_header_name, sendable_header_value, storable_text

from .options import (
    MAX_EXPIRE_SECONDS,
    validate_coalesce,
    validate_expiry_by_type,
    validate_filter,
    validate_path,
)
from .targets import validate_target

MAX_TIMEOUT_SECONDS = 60
# Needed for every replay, in the admin and the API (Delivery.Meta.permissions).
REPLAY_PERMISSION = "subscriptions.replay_delivery"

# The name the migrations refer to.
generate_signing_secret = generate_secret


# Headers that frame the request: a static value would break it.
FRAMING_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "te", "expect"}


def validate_event_types(value) -> None:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item and storable_text(item) for item in value
    ):
        raise ValidationError(
            "A list of event types or globs is required (text without NUL characters).",
            code="event_types",
        )


def validate_headers(value) -> None:
    """Static headers must be sendable as they are: checked here, never at delivery time."""
    if not isinstance(value, dict):
        raise ValidationError("Headers must be an object of strings.", code="headers")
    for name, text in value.items():
        if not (isinstance(text, str) and sendable_header_name(name)):
            raise ValidationError(
                "Header names are HTTP tokens (letters, digits, -) with text values.",
                code="headers",
            )
        if name.lower() in FRAMING_HEADERS:
            raise ValidationError(f"The {name} header is set by the hub.", code="headers")
        if not sendable_header_value(text):
            raise ValidationError(
                f"The value of {name} must be printable Latin-1 text (no line breaks).",
                code="headers",
            )


class PayloadFormat(models.TextChoices):
    ORIGINAL = "original", "Original body as received"
    CLOUDEVENTS = "cloudevents", "CloudEvents 1.0 JSON envelope"


class Priority(models.TextChoices):
    HIGH = "high", "High: drained from its own queue by its own workers"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low: drained when no normal work waits"


class Subscription(models.Model):
    name = models.CharField(max_length=100)
    # The one rule for the admin and the API: no internal targets (HUB_ALLOW_PRIVATE_TARGETS).
    url = models.URLField(
        max_length=500, validators=[validate_target], help_text="http or https target."
    )
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
        validators=[validate_event_types],
        help_text='Exact types or globs, e.g. ["appliance/*", "session.*"]; "*" is everything.',
    )
    sources = models.ManyToManyField(
        Source,
        blank=True,
        related_name="subscriptions",
        help_text="Leave empty to receive from every source.",
    )
    # Encrypted at rest (receivers.encryption): the hub signs with them, so it must read them.
    secret = EncryptedTextField(default=generate_signing_secret)
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    headers = models.JSONField(
        default=dict, blank=True, validators=[validate_headers], help_text="Static headers to add."
    )
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
        return f"{self.webhook_id} to {self.subscription.name}"


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


class AlertKind(models.TextChoices):
    SUBSCRIPTION_FAILING = "subscription.failing", "Subscription failing"
    SUBSCRIPTION_RECOVERED = "subscription.recovered", "Subscription recovered"
    SUBSCRIPTION_DISABLED = "subscription.disabled", "Subscription disabled"
    DELIVERY_EXHAUSTED = "delivery.exhausted", "Delivery failed for good"
    SOURCE_REJECTING = "source.rejecting", "Source's requests refused"
    SOURCE_SILENT = "source.silent", "Source silent"
    BACKLOG_HIGH = "backlog.high", "Backlog high"


class Alert(models.Model):
    """A condition the hub raised (subscriptions/services/alerts.py): open until it clears, one
    at a time per condition. Each is also an event of the hub's own source."""

    kind = models.CharField(max_length=30, choices=AlertKind.choices)
    # What it is about, e.g. "subscription:5": one open alert per kind and key.
    key = models.CharField(max_length=100)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, related_name="alerts", on_delete=models.CASCADE
    )
    source = models.ForeignKey(
        Source, null=True, blank=True, related_name="alerts", on_delete=models.CASCADE
    )
    message = models.CharField(max_length=500)
    opened_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    # The hub's event that carries it to subscribers (gone when retention purges it).
    event = models.ForeignKey(
        Event, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    # Set when the mail and the Slack message were handed out (or there was none to send).
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"],
                condition=models.Q(cleared_at__isnull=True),
                name="alert_one_open_per_condition",
            )
        ]
        indexes = [
            models.Index(fields=["cleared_at", "-opened_at"], name="alert_open_idx"),
            models.Index(
                fields=["opened_at"],
                condition=models.Q(notified_at__isnull=True),
                name="alert_unnotified_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class BackfillState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class Backfill(models.Model):
    """Stored events sent to a subscription on request, in received order, in chunks
    (subscriptions/services/backfill.py); the cursor makes a lost run resumable."""

    subscription = models.ForeignKey(
        Subscription, related_name="backfills", on_delete=models.CASCADE
    )
    received_after = models.DateTimeField()
    received_before = models.DateTimeField()
    event_types = models.JSONField(
        default=list, blank=True, help_text="Narrow to these types or globs (empty: all)."
    )
    sources = models.ManyToManyField(
        Source, blank=True, related_name="+", help_text="Narrow to these sources (empty: all)."
    )
    resend = models.BooleanField(
        default=False, help_text="Send again the events already delivered to this subscription."
    )
    state = models.CharField(
        max_length=10, choices=BackfillState.choices, default=BackfillState.QUEUED
    )
    total = models.PositiveIntegerField(default=0, help_text="Matching events when it was asked.")
    examined = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0, help_text="Deliveries made or sent again.")
    skipped = models.PositiveIntegerField(
        default=0, help_text="Events already delivered, or on their way."
    )
    # The last event done, in received order: where a run resumes.
    cursor_received_at = models.DateTimeField(null=True, blank=True)
    cursor_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # One run at a time; an expired lease (a worker that died) is resumed by the sweep.
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "lease_until"], name="backfill_state_idx")]

    def __str__(self) -> str:
        return f"backfill {self.pk} to {self.subscription}"
