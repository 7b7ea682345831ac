from django.urls import path
from intake.views import receive

urlpatterns = [path("hooks/gridx/", receive, name="receive")]
