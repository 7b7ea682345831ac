"""What receiving tells the rest of the hub: one signal, sent once a new event is committed.

Receiving knows nothing of delivery. subscriptions connects its fan-out to this signal in its
AppConfig.ready(), the way dj-stripe and django-anymail hand their events out.
"""

from django.dispatch import Signal

# Sent with `event_id` for each new event that is not a test, after its row is committed.
event_stored = Signal()
