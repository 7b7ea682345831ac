import copy

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .activity import silent_since
from .masking import shown_headers
from .models import VERIFICATION_FIELDS, Event, Refusal, Source
from .services import readable_payload
from .sources import (
    MAX_GRACE_HOURS,
    ROTATION_GRACE_HOURS,
    create_source,
    receive_url,
    replace_secrets,
)


class SourceSerializer(serializers.ModelSerializer):
    # Write-only: a secret is shown once, in the answer to the request that created it.
    secrets = serializers.ListField(
        child=serializers.CharField(min_length=8, max_length=500),
        write_only=True,
        required=False,
        help_text="Verification secrets; one is generated when none is given.",
    )
    receive_url = serializers.SerializerMethodField()
    active_secrets = serializers.SerializerMethodField()
    activity = serializers.SerializerMethodField(
        help_text="The last event, since when the source is silent (null: it is not), and the "
        "requests refused in the last 24 hours with the last one."
    )

    class Meta:
        model = Source
        fields = [
            "slug",
            "provider",
            "is_active",
            "description",
            "expected_interval",
            "secrets",
            "active_secrets",
            "receive_url",
            *VERIFICATION_FIELDS,
            "created_at",
            "activity",
        ]
        read_only_fields = ["created_at"]

    def get_receive_url(self, source: Source) -> str:
        return receive_url(source)

    def get_active_secrets(self, source: Source) -> list[str]:
        return [secret.masked for secret in source.secrets.active()]

    def get_activity(self, source: Source) -> dict:
        # Annotated by receivers.activity.with_activity in the viewset; absent on a new source.
        last_event_at = getattr(source, "last_event_at", None)
        last_refusal_at = getattr(source, "last_refusal_at", None)
        field = serializers.DateTimeField()
        since = silent_since(source, last_event_at, timezone.now())
        return {
            "last_event_at": last_event_at and field.to_representation(last_event_at),
            "silent_since": since and field.to_representation(since),
            "refused_last_24h": getattr(source, "refused_day", 0),
            "last_refusal": last_refusal_at
            and {
                "at": field.to_representation(last_refusal_at),
                "reason": source.last_refusal_reason,
            },
        }

    def validate(self, attrs):
        if self.instance is not None and attrs.get("provider", self.instance.provider) != (
            self.instance.provider
        ):
            # Its secrets are stored for the provider (keys encrypted, tokens as digests).
            raise serializers.ValidationError(
                {"provider": "A source's provider cannot change; create a new source."}
            )
        # The provider judges its options, on the source as it would be saved.
        candidate = copy.copy(self.instance) if self.instance is not None else Source()
        for name, value in attrs.items():
            if name != "secrets":
                setattr(candidate, name, value)
        errors = candidate.option_errors()
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def create(self, validated_data):
        secrets = validated_data.pop("secrets", None)
        slug = validated_data.pop("slug")
        provider = validated_data.pop("provider")
        source, plaintext = create_source(slug, provider, secrets=secrets, **validated_data)
        source._created_secrets = plaintext
        return source

    def update(self, instance, validated_data):
        secrets = validated_data.pop("secrets", None)
        source = super().update(instance, validated_data)
        if secrets:
            replace_secrets(source, secrets)
        return source


class SourceCreatedSerializer(SourceSerializer):
    """The answer to a creation: the one time the secrets are shown."""

    secrets = serializers.SerializerMethodField(help_text="Shown this once.")

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_secrets(self, source: Source) -> list[str]:
        return getattr(source, "_created_secrets", [])


class EventListSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "source", "external_id", "type", "is_test", "status", "received_at"]


class EventDetailSerializer(EventListSerializer):
    payload = serializers.SerializerMethodField()
    headers = serializers.SerializerMethodField(
        help_text="The request's headers; credentials masked as in the admin."
    )

    class Meta(EventListSerializer.Meta):
        fields = EventListSerializer.Meta.fields + [
            "occurred_at",
            "duplicates",
            "headers",
            "payload",
        ]

    @extend_schema_field(OpenApiTypes.ANY)
    def get_payload(self, event: Event):
        return readable_payload(event)

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_headers(self, event: Event) -> dict[str, str]:
        return shown_headers(event)


class RefusalSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Refusal
        fields = ["id", "at", "slug", "source", "reason", "detail", "remote_addr", "body_size"]


class RotateSecretSerializer(serializers.Serializer):
    grace_hours = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        default=ROTATION_GRACE_HOURS,
        help_text="How long the current secrets stay valid next to the new one.",
    )
    secret = serializers.CharField(
        min_length=8,
        max_length=500,
        required=False,
        write_only=True,
        help_text="The new secret; one is generated when none is given.",
    )
