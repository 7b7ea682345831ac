from django.utils import timezone
from rest_framework import serializers

from receivers.models import Source

from .models import HEALTH_FIELDS, Attempt, Backfill, Delivery, Subscription
from .services.controls import SIGNING_GRACE_HOURS
from .signing import SECRET_PREFIX, secret_bytes


class SubscriptionSerializer(serializers.ModelSerializer):
    sources = serializers.SlugRelatedField(
        slug_field="slug", queryset=Source.objects.all(), many=True, required=False
    )
    # Shown once: in the answer to the request that created (or set) it.
    secret = serializers.CharField(write_only=True, required=False, max_length=200)
    masked_secret = serializers.CharField(read_only=True)

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
            "created_at",
            *HEALTH_FIELDS,
        ]
        read_only_fields = ["created_at", *HEALTH_FIELDS]

    def validate_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Only http and https targets are supported.")
        return value

    def validate_event_types(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise serializers.ValidationError("A list of event types or globs is required.")
        return value

    def validate_headers(self, value):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise serializers.ValidationError("Headers must be an object of strings.")
        return value

    def validate_secret(self, value: str) -> str:
        if not value.startswith(SECRET_PREFIX) or secret_bytes(value) == value.encode():
            raise serializers.ValidationError("A signing secret looks like whsec_<base64>.")
        return value

    def create(self, validated_data):
        subscription = super().create(validated_data)
        subscription._show_secret = True
        return subscription

    def update(self, instance, validated_data):
        subscription = super().update(instance, validated_data)
        subscription._show_secret = "secret" in validated_data
        return subscription

    def to_representation(self, subscription: Subscription):
        data = super().to_representation(subscription)
        if getattr(subscription, "_show_secret", False):
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
        max_value=24 * 30,
        default=SIGNING_GRACE_HOURS,
        help_text="How long the previous secret also signs (as a second signature).",
    )
