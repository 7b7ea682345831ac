"""The two baselines of the receive benchmark.

- `bare`: the cheapest Django view there is, behind the hub's middleware: 204, nothing else.
- `TextbookReceiver`: the receiver most tutorials write with DRF: verify the gridX HMAC-SHA512
  signature over the raw body, validate and save through a ModelSerializer, `.delay()` a task.
"""

import hashlib
import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.validators import UniqueValidator
from rest_framework.views import APIView

from .models import TextbookEvent
from .tasks import process_textbook_event


@csrf_exempt
def bare(request):
    return HttpResponse(status=204)


class TextbookEventSerializer(serializers.ModelSerializer):
    # gridX calls it "id"; the UniqueValidator is what ModelSerializer would add for the
    # unique column itself: a retried event gets a 400, not a second row (or a 500).
    id = serializers.CharField(
        source="event_id",
        max_length=255,
        validators=[UniqueValidator(queryset=TextbookEvent.objects.all())],
    )

    class Meta:
        model = TextbookEvent
        fields = ["id", "type", "time", "source", "data"]


class TextbookReceiver(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        header = request.headers.get("X-Signature", "")
        expected = hmac.new(
            settings.BENCH_GRIDX_SECRET.encode(), request.body, hashlib.sha512
        ).hexdigest()
        digests = [part.strip().removeprefix("sha512=") for part in header.split(",")]
        if not any(hmac.compare_digest(digest, expected) for digest in digests):
            return Response({"error": "bad signature"}, status=status.HTTP_401_UNAUTHORIZED)
        serializer = TextbookEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = serializer.save()
        process_textbook_event.delay(event.pk)
        return Response({"received": True}, status=status.HTTP_201_CREATED)
