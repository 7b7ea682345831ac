from django.db import models


class Event(models.Model):
    """One received gridX event; saving it is what makes django-webhook send webhooks."""

    external_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.external_id
