from django.urls import re_path

from .views import receive_view

SLUG = r"(?P<slug>[-a-zA-Z0-9_]+)"

urlpatterns = [
    re_path(rf"^hooks/{SLUG}/?$", receive_view, name="receive"),
    # gridX's samples post to /…/events/<event-type>: anything after the slug is accepted.
    re_path(rf"^hooks/{SLUG}/(?P<rest>.+)$", receive_view, name="receive-path"),
]
