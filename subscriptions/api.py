"""Management API for subscriptions and deliveries, and the replay of an event."""

from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from receivers import api as receivers_api

from .models import Delivery, Subscription
from .serializers import DeliverySerializer, SubscriptionSerializer
from .services.fanout import STAMPED_OPTIONS, restamp_waiting
from .services.replay import replay_deliveries, replay_event


class EventViewSet(receivers_api.EventViewSet):
    """receivers' event history, plus `POST /events/<id>/replay/`."""

    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        count = replay_event(self.get_object())
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)


class SubscriptionViewSet(viewsets.ModelViewSet):
    queryset = Subscription.objects.prefetch_related("sources")
    serializer_class = SubscriptionSerializer
    filterset_fields = ["is_active", "payload_format", "priority"]

    def perform_update(self, serializer):
        before = [getattr(serializer.instance, name) for name in STAMPED_OPTIONS]
        subscription = serializer.save()
        if before != [getattr(subscription, name) for name in STAMPED_OPTIONS]:
            restamp_waiting(subscription)


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Delivery.objects.prefetch_related("attempts").order_by("-created_at", "-id")
    serializer_class = DeliverySerializer
    filterset_fields = ["status", "subscription", "event"]

    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        count = replay_deliveries([self.get_object().pk])
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
