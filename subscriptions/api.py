"""Management API for subscriptions, deliveries and backfills, and the replay of an event.

Everything the admin does has an endpoint here, and asks for the permission the admin asks
for: pause, resume, rotate the signing secret and send a test event need
subscriptions.change_subscription; replays subscriptions.replay_delivery; a backfill
subscriptions.add_backfill (docs/api.md).
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from receivers import api as receivers_api
from receivers.permissions import requires

from .models import REPLAY_PERMISSION, Backfill, Delivery, Subscription
from .selectors import failed_delivery_ids
from .serializers import (
    BackfillRequestSerializer,
    BackfillSerializer,
    DeliverySerializer,
    SigningRotationSerializer,
    SubscriptionCreatedSerializer,
    SubscriptionSerializer,
)
from .services import backfill, controls
from .services.fanout import STAMPED_OPTIONS, restamp_waiting
from .services.replay import queue_replay, replay_deliveries, replay_event

CAN_CHANGE = requires("subscriptions.change_subscription")
CAN_REPLAY = requires(REPLAY_PERMISSION)
CAN_BACKFILL = requires("subscriptions.add_backfill")


class EventViewSet(receivers_api.EventViewSet):
    """receivers' event history, plus `POST /events/<id>/replay/`."""

    @action(detail=True, methods=["post"], permission_classes=[CAN_REPLAY])
    def replay(self, request, pk=None):
        count = replay_event(self.get_object())
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(create=extend_schema(responses={201: SubscriptionCreatedSerializer}))
class SubscriptionViewSet(receivers_api.CreatedAnswerMixin, viewsets.ModelViewSet):
    queryset = Subscription.objects.prefetch_related("sources")
    serializer_class = SubscriptionSerializer
    created_serializer_class = SubscriptionCreatedSerializer
    filterset_fields = ["is_active", "payload_format", "priority"]

    def perform_update(self, serializer):
        before = [getattr(serializer.instance, name) for name in STAMPED_OPTIONS]
        subscription = serializer.save()
        if before != [getattr(subscription, name) for name in STAMPED_OPTIONS]:
            restamp_waiting(subscription)

    def one(self):
        """The subscription of the URL, as a queryset for the services that take one."""
        return Subscription.objects.filter(pk=self.get_object().pk)

    def current(self, answer_status=status.HTTP_200_OK) -> Response:
        subscription = Subscription.objects.prefetch_related("sources").get(pk=self.kwargs["pk"])
        return Response(self.get_serializer(subscription).data, status=answer_status)

    @action(detail=True, methods=["post"], permission_classes=[CAN_CHANGE])
    def pause(self, request, pk=None):
        """Stop sending; new events still become deliveries and wait for the resume."""
        controls.pause(self.one(), reason=f"Paused by {request.user} through the API.")
        return self.current()

    @action(detail=True, methods=["post"], permission_classes=[CAN_CHANGE])
    def resume(self, request, pk=None):
        """Send again (a paused or disabled subscription), the waiting deliveries first."""
        controls.resume(self.one())
        return self.current()

    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-secret",
        permission_classes=[CAN_CHANGE],
        serializer_class=SigningRotationSerializer,
    )
    def rotate_secret(self, request, pk=None):
        """A new signing secret, shown in this answer only; the previous one also signs for
        `grace_hours` (24 by default)."""
        given = SigningRotationSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        subscription = self.get_object()
        secret = controls.rotate_signing_secret(
            subscription, grace_hours=given.validated_data["grace_hours"]
        )
        expires = subscription.previous_secret_expires_at
        return Response({"secret": secret, "previous_secret_expires_at": expires})

    @action(detail=True, methods=["post"], url_path="send-test", permission_classes=[CAN_CHANGE])
    def send_test(self, request, pk=None):
        """POST a signed test event (a ping) to the target now and answer what it answered;
        nothing is stored."""
        result = controls.send_test_event(self.get_object())
        return Response(
            {
                "succeeded": result.succeeded,
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "error": result.error,
                "answer": result.excerpt[:1000],
            }
        )

    @action(
        detail=True, methods=["post"], url_path="replay-failed", permission_classes=[CAN_REPLAY]
    )
    def replay_failed(self, request, pk=None):
        """Every failed delivery of the subscription again, in Celery."""
        count = queue_replay(failed_delivery_ids(subscription=self.get_object()))
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)

    @action(
        detail=True,
        methods=["post"],
        permission_classes=[CAN_BACKFILL],
        serializer_class=BackfillRequestSerializer,
    )
    def backfill(self, request, pk=None):
        """Send stored events to the subscription, in received order: 202 with the backfill's
        id and how many events match; with `preview`, 200 with the count only."""
        given = BackfillRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        subscription = self.get_object()
        asked = backfill.Request(
            received_after=data["received_after"],
            received_before=data["received_before"],
            event_types=data.get("event_types", []),
            sources=data.get("sources", []),
            resend=data["resend"],
        )
        if data["preview"]:
            return Response(backfill.preview(subscription, asked))
        started = backfill.start(subscription, asked, created_by=request.user.get_username())
        return Response(
            {"backfill": started.pk, "count": started.total}, status=status.HTTP_202_ACCEPTED
        )


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Delivery.objects.prefetch_related("attempts").order_by("-created_at", "-id")
    serializer_class = DeliverySerializer
    filterset_fields = ["status", "subscription", "event"]

    @action(detail=True, methods=["post"], permission_classes=[CAN_REPLAY])
    def replay(self, request, pk=None):
        count = replay_deliveries([self.get_object().pk])
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)


class BackfillViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Backfills with their progress: `examined` of `total` events looked at, `queued` sent."""

    queryset = Backfill.objects.prefetch_related("sources").order_by("-created_at", "-id")
    serializer_class = BackfillSerializer
    filterset_fields = ["subscription", "state"]
    permission_classes = [requires("subscriptions.view_backfill")]
