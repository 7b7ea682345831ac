"""The hub's URLs plus the two baseline endpoints of the receive benchmark."""

from django.urls import include, path

from bench.baselines.views import TextbookReceiver, bare

urlpatterns = [
    path("bench/bare/", bare, name="bench-bare"),
    path("bench/textbook/", TextbookReceiver.as_view(), name="bench-textbook"),
    path("", include("hub.urls")),
]
