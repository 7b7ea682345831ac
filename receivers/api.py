"""Management API for sources, the event history and refused requests (subscriptions/api.py
adds replays)."""

from datetime import UTC, timedelta

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from . import activity, payload_search, sources
from .models import Event, Refusal, RefusalReason, Source
from .permissions import requires
from .serializers import (
    EventDetailSerializer,
    EventListSerializer,
    RefusalSerializer,
    RotateSecretSerializer,
    SourceCreatedSerializer,
    SourceSerializer,
)


class CreatedAnswerMixin:
    """create() answers with `created_serializer_class`: the one answer that shows a secret
    (documented as the 201 response with extend_schema_view)."""

    created_serializer_class: type

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        context = self.get_serializer_context()
        answer = self.created_serializer_class(serializer.instance, context=context)
        return Response(answer.data, status=status.HTTP_201_CREATED)


@extend_schema_view(create=extend_schema(responses={201: SourceCreatedSerializer}))
class SourceViewSet(CreatedAnswerMixin, viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    created_serializer_class = SourceCreatedSerializer
    lookup_field = "slug"
    filterset_fields = ["provider", "is_active"]

    def get_queryset(self):
        return activity.with_activity(super().get_queryset(), timezone.now())

    def get_object(self):
        source = super().get_object()
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and source.is_internal:
            raise PermissionDenied("The hub's own source is not changed by hand.")
        return source

    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-secret",
        serializer_class=RotateSecretSerializer,
        permission_classes=[requires("receivers.change_source")],
    )
    def rotate_secret(self, request, slug=None):
        """A new secret, shown in this answer only; the active ones stay valid for
        `grace_hours` (72 by default)."""
        source = self.get_object()
        given = RotateSecretSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        grace = given.validated_data["grace_hours"]
        value = sources.rotate_secret(
            source, grace_hours=grace, value=given.validated_data.get("secret") or None
        )
        answer = {"secret": value, "grace_hours": grace}
        answer["receive_url"] = sources.receive_url(source, value)
        return Response(answer, status=status.HTTP_200_OK)


class PayloadTermsField(forms.Field):
    """Every `payload` parameter of the query string, read as payload-search terms."""

    widget = forms.MultipleHiddenInput

    def clean(self, value):
        values = [v for v in (value or []) if v]
        try:
            return payload_search.parse_api_terms(values)
        except payload_search.PayloadSearchError as exc:
            raise forms.ValidationError(str(exc)) from None


PAYLOAD_HELP = (
    "path:value inside the payload, e.g. data.applianceID:fc0a…; repeat to AND. A number also "
    'matches its string; "quoted" matches the string only (see docs/api.md).'
)


@extend_schema_field({"type": "array", "items": {"type": "string"}, "description": PAYLOAD_HELP})
class PayloadFilter(django_filters.Filter):
    field_class = PayloadTermsField

    def filter(self, queryset, terms):
        return payload_search.matching(queryset, terms) if terms else queryset


# The widest offsets in use (UTC-12 to UTC+14); PostgreSQL refuses some valid ISO 8601 ones.
MAX_UTC_OFFSET = timedelta(hours=14)


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time with a real-world UTC offset, handed to the database in UTC."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        if abs(result.utcoffset() or timedelta()) > MAX_UTC_OFFSET:
            raise ValidationError("The UTC offset must be within -14:00 and +14:00.")
        try:
            return result.astimezone(UTC)
        except OverflowError:
            raise ValidationError("The time is outside the years 1 to 9999 in UTC.") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class EventFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__slug")
    payload = PayloadFilter(help_text=PAYLOAD_HELP)
    received_after = UtcDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["source", "type", "status", "is_test", "external_id"]


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Event.objects.select_related("source").order_by("-received_at", "-id")
    filterset_class = EventFilter

    def get_serializer_class(self):
        return EventListSerializer if self.action == "list" else EventDetailSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            # The list never needs the bodies: keep the page query light on big tables.
            queryset = queryset.defer("raw_body", "payload", "headers")
        else:
            # Read by the serializer, which survives a payload nested too deep to decode here.
            queryset = queryset.defer("payload")
        return queryset


class RefusalFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="slug")
    reason = django_filters.ChoiceFilter(choices=RefusalReason.choices)
    after = UtcDateTimeFilter(field_name="at", lookup_expr="gte")
    before = UtcDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = Refusal
        fields = ["source", "reason", "after", "before"]


class RefusalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Refused requests, newest first (at most HUB_REFUSALS_PER_MINUTE per source and minute
    are stored; the rest are counted on the source)."""

    queryset = Refusal.objects.select_related("source").order_by("-at", "-id")
    serializer_class = RefusalSerializer
    filterset_class = RefusalFilter
    permission_classes = [requires("receivers.view_refusal")]
