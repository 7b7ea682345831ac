from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from receivers.api import RefusalViewSet, SourceViewSet
from subscriptions.api import BackfillViewSet, DeliveryViewSet, EventViewSet, SubscriptionViewSet

router = DefaultRouter()
router.register("sources", SourceViewSet)
router.register("events", EventViewSet)
router.register("subscriptions", SubscriptionViewSet)
router.register("deliveries", DeliveryViewSet)
router.register("rejections", RefusalViewSet)
router.register("backfills", BackfillViewSet)

urlpatterns = [
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-ui"),
]
