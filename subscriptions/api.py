"""Management API for subscriptions and deliveries, and the replay of an event."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.response import Response

from receivers import api as receivers_api

from .models import REPLAY_PERMISSION, Delivery, Subscription
from .serializers import (
    DeliverySerializer,
    SubscriptionCreatedSerializer,
    SubscriptionSerializer,
)
from .services.replay import replay_deliveries, replay_event


class CanReplay(BasePermission):
    """A replay needs `subscriptions.replay_delivery`, whatever is replayed (as in the admin)."""

    def has_permission(self, request, view) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)


REPLAY_PERMISSIONS = [IsAdminUser, CanReplay]


class EventViewSet(receivers_api.EventViewSet):
    """receivers' event history, plus `POST /events/<id>/replay/`."""

    @action(detail=True, methods=["post"], permission_classes=REPLAY_PERMISSIONS)
    def replay(self, request, pk=None):
        count = replay_event(self.get_object())
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(create=extend_schema(responses={201: SubscriptionCreatedSerializer}))
class SubscriptionViewSet(receivers_api.CreatedAnswerMixin, viewsets.ModelViewSet):
    queryset = Subscription.objects.prefetch_related("sources")
    serializer_class = SubscriptionSerializer
    created_serializer_class = SubscriptionCreatedSerializer
    filterset_fields = ["is_active", "payload_format"]


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Delivery.objects.prefetch_related("attempts").order_by("-created_at", "-id")
    serializer_class = DeliverySerializer
    filterset_fields = ["status", "subscription", "event"]

    @action(detail=True, methods=["post"], permission_classes=REPLAY_PERMISSIONS)
    def replay(self, request, pk=None):
        count = replay_deliveries([self.get_object().pk])
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
