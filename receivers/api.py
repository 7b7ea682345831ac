"""Management API for sources and the event history (subscriptions/api.py adds replays)."""

import django_filters
from rest_framework import mixins, viewsets

from .models import Event, Source
from .serializers import EventDetailSerializer, EventListSerializer, SourceSerializer


class SourceViewSet(viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    lookup_field = "slug"
    filterset_fields = ["provider", "is_active"]


class EventFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__slug")
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
        else:
            # Read by the serializer, which survives a payload nested too deep to decode here.
            queryset = queryset.defer("payload")
        return queryset
