from rest_framework import serializers

from receivers.models import Source

from . import filters
from .models import HEALTH_FIELDS, Attempt, Delivery, Subscription
from .signing import SECRET_PREFIX, secret_bytes


class SubscriptionSerializer(serializers.ModelSerializer):
    sources = serializers.SlugRelatedField(
        slug_field="slug", queryset=Source.objects.all(), many=True, required=False
    )
    # Shown once: in the answer to the request that created (or set) it.
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

    def get_filter_rules(self, subscription: Subscription) -> list[str]:
        return filters.describe(subscription.filter)

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
            "order_key",
            "coalesce_key",
            "expires_at",
            "attempts",
        ]
