from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import VERIFICATION_FIELDS, Event, Source
from .providers.generic_hmac import unsigned_timestamp_error
from .services import readable_payload
from .sources import create_source, receive_url, replace_secrets


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

    class Meta:
        model = Source
        fields = [
            "slug",
            "provider",
            "is_active",
            "description",
            "secrets",
            "active_secrets",
            "receive_url",
            *VERIFICATION_FIELDS,
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def get_receive_url(self, source: Source) -> str:
        return receive_url(source)

    def get_active_secrets(self, source: Source) -> list[str]:
        return [secret.masked for secret in source.secrets.active()]

    def validate(self, attrs):
        provider = attrs.get("provider", getattr(self.instance, "provider", None))
        header = attrs.get("hmac_header", getattr(self.instance, "hmac_header", ""))
        if provider == "hmac" and not header:
            raise serializers.ValidationError({"hmac_header": "The hmac provider needs a header."})
        error = unsigned_timestamp_error(
            attrs.get("hmac_template", getattr(self.instance, "hmac_template", "{body}")),
            attrs.get("hmac_timestamp_header", getattr(self.instance, "hmac_timestamp_header", "")),
        )
        if error:
            raise serializers.ValidationError({"hmac_timestamp_header": error})
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

    def to_representation(self, source: Source):
        data = super().to_representation(source)
        created = getattr(source, "_created_secrets", None)
        if created:
            data["secrets"] = created
        return data


class EventListSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "source", "external_id", "type", "is_test", "status", "received_at"]


class EventDetailSerializer(EventListSerializer):
    payload = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.ANY)
    def get_payload(self, event: Event):
        return readable_payload(event)

    class Meta(EventListSerializer.Meta):
        fields = EventListSerializer.Meta.fields + [
            "occurred_at",
            "duplicates",
            "headers",
            "payload",
        ]
