"""Management API for sources and the event history (subscriptions/api.py adds replays)."""

from datetime import UTC, timedelta

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from .models import Event, Source
from .serializers import (
    EventDetailSerializer,
    EventListSerializer,
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
