from django.core.validators import slug_re
from django.utils import timezone
from rest_framework import serializers

from receivers.masking import keep_masked_values, masked_values
from receivers.models import Source
from receivers.sources import MAX_GRACE_HOURS

from . import filters
from .models import (
    HEALTH_FIELDS,
    Attempt,
    Backfill,
    Delivery,
    Subscription,
)
from .services.controls import SIGNING_GRACE_HOURS
from .signing import SECRET_PREFIX, secret_bytes


class SourceSlugField(serializers.SlugRelatedField):
    """A source by its slug; what cannot be a slug is refused before it reaches the database."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or not slug_re.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class SubscriptionSerializer(serializers.ModelSerializer):
    sources = SourceSlugField(
        slug_field="slug", queryset=Source.objects.all(), many=True, required=False
    )
    # Write-only: shown once, in the answer to the request that created the subscription.
    secret = serializers.CharField(write_only=True, required=False, max_length=200)
    masked_secret = serializers.CharField(read_only=True)
    filter_rules = serializers.SerializerMethodField(help_text="The filter, as readable rules.")

    class Meta:
        model = Subscription
        fields = [
            "id",
            "name",
            "url",
            "is_active",
            "is_paused",
            "event_types",
            "sources",
            "secret",
            "masked_secret",
            "headers",
            "timeout_seconds",
            "payload_format",
            "priority",
            "filter",
            "filter_rules",
            "ordering_key",
            "coalesce",
            "expire_after",
            "expire_after_by_type",
            "created_at",
            *HEALTH_FIELDS,
        ]
        read_only_fields = ["created_at", *HEALTH_FIELDS]
        extra_kwargs = {
            "headers": {
                "help_text": "Static headers to add. Values are write-only: answers show them "
                "masked, and a masked value sent back keeps the stored one."
            }
        }

    def validate_secret(self, value: str) -> str:
        if not value.startswith(SECRET_PREFIX) or secret_bytes(value) == value.encode():
            raise serializers.ValidationError("A signing secret looks like whsec_<base64>.")
        return value

    def validate(self, attrs):
        if self.instance is not None and "headers" in attrs:
            attrs["headers"] = keep_masked_values(attrs["headers"], self.instance.headers)
        return attrs

    def get_filter_rules(self, subscription: Subscription) -> list[str]:
        return filters.describe(subscription.filter)

    def to_representation(self, subscription: Subscription):
        data = super().to_representation(subscription)
        data["headers"] = masked_values(subscription.headers or {})
        return data


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    """The answer to a creation: the one time the signing secret is shown."""

    secret = serializers.CharField(read_only=True, help_text="Shown this once.")

    def to_representation(self, subscription: Subscription):
        data = super().to_representation(subscription)
        data["secret"] = subscription.secret
        return data


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = [
            "id",
            "started_at",
            "status_code",
            "duration_ms",
            "response_excerpt",
            "error",
            "is_replay",
        ]


class DeliverySerializer(serializers.ModelSerializer):
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "subscription",
            "status",
            "webhook_id",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
            "order_key",
            "coalesce_key",
            "expires_at",
            "attempts",
        ]


class BackfillRequestSerializer(serializers.Serializer):
    received_after = serializers.DateTimeField()
    received_before = serializers.DateTimeField(required=False, help_text="Default: now.")
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        max_length=100,
        help_text="Types or globs to narrow to (default: every type the subscription takes).",
    )
    sources = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Source.objects.all(),
        many=True,
        required=False,
        help_text="Sources to narrow to (default: every source the subscription takes).",
    )
    resend = serializers.BooleanField(
        default=False, help_text="Also send the events already delivered to the subscription."
    )
    preview = serializers.BooleanField(
        default=False, help_text="Only count: nothing is sent (200 instead of 202)."
    )

    def validate(self, attrs):
        attrs.setdefault("received_before", timezone.now())
        if attrs["received_after"] >= attrs["received_before"]:
            raise serializers.ValidationError("received_after must come before received_before.")
        return attrs


class BackfillSerializer(serializers.ModelSerializer):
    sources = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = Backfill
        fields = [
            "id",
            "subscription",
            "state",
            "received_after",
            "received_before",
            "event_types",
            "sources",
            "resend",
            "total",
            "examined",
            "queued",
            "skipped",
            "created_at",
            "created_by",
            "finished_at",
        ]


class SigningRotationSerializer(serializers.Serializer):
    grace_hours = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        default=SIGNING_GRACE_HOURS,
        help_text="How long the previous secret also signs (as a second signature).",
    )
