"""Management API for sources and the event history (subscriptions/api.py adds replays)."""

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, viewsets

from . import payload_search
from .models import Event, Source
from .serializers import EventDetailSerializer, EventListSerializer, SourceSerializer


class SourceViewSet(viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    lookup_field = "slug"
    filterset_fields = ["provider", "is_active"]


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


class EventFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__slug")
    payload = PayloadFilter(help_text=PAYLOAD_HELP)
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

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
        return queryset
