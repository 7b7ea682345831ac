"""Sources the hub receives from, their secrets, and the stored events."""

import base64
import secrets as pysecrets

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .encryption import EncryptedTextField
from .providers import INTERNAL, PROVIDERS, provider_choices


class HmacAlgorithm(models.TextChoices):
    SHA1 = "sha1", "HMAC-SHA1"
    SHA256 = "sha256", "HMAC-SHA256"
    SHA512 = "sha512", "HMAC-SHA512"


class HmacEncoding(models.TextChoices):
    HEX = "hex", "hex"
    BASE64 = "base64", "base64"


# How a source is checked, beyond its provider and secrets: the API and the admin edit these.
VERIFICATION_FIELDS = (
    "verify_nothing",
    "allowed_ips",
    "tolerance_seconds",
    "hmac_header",
    "hmac_algorithm",
    "hmac_encoding",
    "hmac_prefix",
    "hmac_template",
    "hmac_timestamp_header",
)


class Source(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    # A callable: the registry decides, so a new provider needs no migration.
    provider = models.CharField(max_length=20, choices=provider_choices)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    # Extra checks any provider can add; a source may also opt out of verification, but
    # only explicitly, and the admin shows that choice as a warning.
    allowed_ips = models.TextField(
        blank=True, help_text="Optional allow list: IP addresses or CIDR ranges, one per line."
    )
    verify_nothing = models.BooleanField(
        default=False,
        help_text="Accept requests without any verification. Only for trusted networks.",
    )
    tolerance_seconds = models.PositiveIntegerField(
        default=300, help_text="Largest accepted clock difference for signed timestamps."
    )
    # Options of the generic `hmac` provider (GenericHmac.options).
    hmac_header = models.CharField(max_length=100, blank=True)
    hmac_algorithm = models.CharField(
        max_length=10, choices=HmacAlgorithm.choices, default=HmacAlgorithm.SHA256
    )
    hmac_encoding = models.CharField(
        max_length=10, choices=HmacEncoding.choices, default=HmacEncoding.HEX
    )
    hmac_prefix = models.CharField(max_length=50, blank=True, help_text='For example "sha256=".')
    hmac_template = models.CharField(
        max_length=200,
        default="{body}",
        help_text="Signed content: {body} is the raw body, {header:Name} a request header.",
    )
    hmac_timestamp_header = models.CharField(
        max_length=100,
        blank=True,
        help_text=(
            "A signed header holding the Unix time the request was sent (seconds or "
            "milliseconds); requests further than the tolerance from now are refused. Name it "
            "in the template too."
        ),
    )
    expected_interval = models.DurationField(
        null=True,
        blank=True,
        help_text=(
            "Flag the source as silent (and raise source.silent) when nothing arrives for this "
            'long, e.g. "1:00:00" for an hour. Empty: never.'
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_internal(self) -> bool:
        """The hub's own source (its alerts): written by the hub, never by a request."""
        return self.provider in INTERNAL

    def clean(self) -> None:
        errors = self.option_errors()
        if errors:
            raise ValidationError(errors)

    def option_errors(self) -> dict[str, str]:
        """Why this source's options cannot work with its provider (the provider says)."""
        provider = PROVIDERS.get(self.provider)
        return provider.option_errors(self) if provider else {}


def generate_secret(url_safe: bool = False) -> str:
    """`whsec_` + standard base64, the form Standard Webhooks libraries load as a key.

    A secret that travels in a URL (Openvolt's `?token=`) uses the URL-safe alphabet instead,
    so that it can be pasted into a query string as it is.
    """
    key = pysecrets.token_bytes(24)
    encoded = base64.urlsafe_b64encode(key) if url_safe else base64.b64encode(key)
    return "whsec_" + encoded.decode()


class SecretQuerySet(models.QuerySet):
    def active(self, now=None):
        now = now or timezone.now()
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class SourceSecret(models.Model):
    """One verification secret. Several can be active at once during a rotation.

    `value` is what the provider's verify() needs, encrypted at rest: the key itself, or for a
    provider that only compares a token the platform sends (Provider.checks_token) the token's
    digest. Create secrets with secret_fields(), which applies that rule."""

    source = models.ForeignKey(Source, related_name="secrets", on_delete=models.CASCADE)
    value = EncryptedTextField()
    # Enough of the secret to tell two apart, never enough to use one (mask()).
    masked = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Set during a rotation: the old secret's grace period."
    )

    objects = SecretQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"secret {self.masked}"

    def __repr__(self) -> str:
        return f"<SourceSecret {self.pk} {self.masked}>"


def secret_fields(provider: str, secret: str) -> dict[str, str]:
    """The fields of a new SourceSecret for a source of `provider` (see SourceSecret)."""
    found = PROVIDERS.get(provider)
    return {
        "value": found.stored_secret(secret) if found else secret,
        "masked": mask(secret),
    }


def mask(value: str) -> str:
    """Enough to tell two secrets apart, never enough to use one."""
    if len(value) < 16:
        return "****"
    return f"****{value[-4:]}"


class EventStatus(models.TextChoices):
    PENDING = "pending", "Stored, waiting for fan-out"
    DISPATCHED = "dispatched", "Deliveries created"
    # Which of the two is shown per event (the admin reads is_test): see not_relayed_reason.
    IGNORED = "ignored", "Not relayed"


class Event(models.Model):
    # No index of its own: (source, external_id) and (source, received_at) both lead with it,
    # and every index costs each received event an insertion.
    source = models.ForeignKey(
        Source, related_name="events", on_delete=models.CASCADE, db_index=False
    )
    external_id = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    headers = models.JSONField(default=dict)
    raw_body = models.BinaryField()
    payload = models.JSONField(null=True)
    is_test = models.BooleanField(default=False)
    status = models.CharField(
        max_length=20, choices=EventStatus.choices, default=EventStatus.PENDING
    )
    duplicates = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="event_unique_per_source"
            )
        ]
        indexes = [
            models.Index(fields=["-received_at", "-id"], name="event_received_idx"),
            models.Index(fields=["source", "-received_at"], name="event_source_received_idx"),
            models.Index(fields=["type", "-received_at"], name="event_type_received_idx"),
            models.Index(fields=["status", "-received_at"], name="event_status_received_idx"),
            models.Index(fields=["is_test", "-received_at"], name="event_test_received_idx"),
            models.Index(fields=["external_id"], name="event_external_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source.slug} · {self.type} · {self.external_id}"

    @property
    def status_text(self) -> str:
        """The status in words; for an event not relayed, which of the two reasons."""
        if self.status != EventStatus.IGNORED:
            return self.get_status_display()
        reason = "a test event" if self.is_test else "no subscription matched"
        return f"Not relayed: {reason}"


class RefusalReason(models.TextChoices):
    SIGNATURE = "signature", "Verification failed"
    STALE_TIMESTAMP = "stale_timestamp", "Signed timestamp outside the tolerance"
    IP_NOT_ALLOWED = "ip_not_allowed", "Address not on the allow list"
    UNKNOWN_SOURCE = "unknown_source", "Unknown or disabled source"
    BAD_PAYLOAD = "bad_payload", "Body not JSON or missing what the provider needs"
    TOO_LARGE = "too_large", "Body too large"


class Refusal(models.Model):
    """One refused request, without any header or body (receivers/refusals.py records them,
    at most HUB_REFUSALS_PER_MINUTE per source and minute)."""

    at = models.DateTimeField()
    # The source the slug named, when there is one (also a disabled one); the slug as tried.
    source = models.ForeignKey(
        Source, null=True, blank=True, related_name="refusals", on_delete=models.CASCADE
    )
    slug = models.CharField(max_length=100)
    reason = models.CharField(max_length=20, choices=RefusalReason.choices)
    remote_addr = models.CharField(max_length=64, blank=True)
    body_size = models.PositiveIntegerField(default=0)
    # Why, for the operator (e.g. "no digest matches an active secret"); never a secret.
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="refusal_at_idx"),
            models.Index(fields=["source", "-at"], name="refusal_source_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.slug}: {self.reason} at {self.at:%Y-%m-%d %H:%M:%S}"


class RefusalMinute(models.Model):
    """Refusals per source and minute: how many there were and how many were stored; the
    difference is what the cap dropped. A null source is every request to no known source."""

    source = models.ForeignKey(
        Source, null=True, blank=True, related_name="refusal_minutes", on_delete=models.CASCADE
    )
    minute = models.DateTimeField()
    refused = models.PositiveIntegerField(default=0)
    stored = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "minute"],
                condition=Q(source__isnull=False),
                name="refusal_minute_per_source",
            ),
            models.UniqueConstraint(
                fields=["minute"],
                condition=Q(source__isnull=True),
                name="refusal_minute_unknown_source",
            ),
        ]
        indexes = [models.Index(fields=["minute"], name="refusal_minute_idx")]

    def __str__(self) -> str:
        return f"{self.source_id or '(unknown)'} {self.minute:%Y-%m-%d %H:%M}: {self.refused}"

    @property
    def dropped(self) -> int:
        return self.refused - self.stored


class SeenEvent(models.Model):
    """The id of an event the purge deleted, kept for HUB_DEDUP_DAYS (receivers.retention).

    Body-only signatures (gridX, Ideavate, eDRV's body form) sign no time, so a captured
    request stays valid forever; while its event row exists the unique constraint makes a
    replay a duplicate, and after the purge this ledger does: a BEFORE INSERT trigger on the
    event table (migration 0005) skips a row whose id is here, whichever code inserts it, so
    the receive path pays one index probe in the database and nothing in Python.
    """

    pk = models.CompositePrimaryKey("source", "external_id")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, db_index=False)
    external_id = models.CharField(max_length=255)
    # When the event was received: the ledger row goes HUB_DEDUP_DAYS after that.
    received_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="seenevent_received_idx")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id}"
