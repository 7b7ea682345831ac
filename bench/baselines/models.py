"""What a textbook receiver stores: one row per gridX event, the id unique."""

from django.db import models


class TextbookEvent(models.Model):
    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    time = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=255, blank=True)
    data = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.event_id
