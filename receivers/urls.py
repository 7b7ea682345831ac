from django.urls import re_path

from .views import receive_view

SLUG = r"(?P<slug>[-a-zA-Z0-9_]+)"

urlpatterns = [
    re_path(rf"^hooks/{SLUG}/$", receive_view, name="receive"),
    # Senders are not redirected (a 301 would turn their POST into a GET): no slash is fine.
    re_path(rf"^hooks/{SLUG}$", receive_view),
    # gridX's samples post to /…/events/<event-type>: anything after the slug is accepted.
    re_path(rf"^hooks/{SLUG}/(?P<rest>.+)$", receive_view, name="receive-path"),
]
