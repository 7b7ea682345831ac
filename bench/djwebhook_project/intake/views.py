"""Receive a signed gridX event and save it; django-webhook's post_save listener does the rest."""

import hashlib
import hmac
import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Event


@csrf_exempt
@require_POST
def receive(request):
    expected = hmac.new(settings.GRIDX_SECRET.encode(), request.body, hashlib.sha512).hexdigest()
    header = request.headers.get("X-Signature", "")
    digests = [part.strip().removeprefix("sha512=") for part in header.split(",")]
    if not any(hmac.compare_digest(digest, expected) for digest in digests):
        return JsonResponse({"error": "verification failed"}, status=401)
    payload = json.loads(request.body)
    Event.objects.create(external_id=payload["id"], type=payload["type"], payload=payload)
    return JsonResponse({"received": True})
