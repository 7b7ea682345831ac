from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("receivers.urls")),
    path("api/v1/", include("hub.api_urls")),
    path("admin/dashboard/", include("hub.dashboard")),
    path("admin/", admin.site.urls),
]
