"""Who may call the management API: staff, with the model permissions the admin asks for."""

from rest_framework.permissions import DjangoModelPermissions

VIEW = ["%(app_label)s.view_%(model_name)s"]


class ModelPermissions(DjangoModelPermissions):
    """DRF's model permissions, with the view permission required for reads as well: DRF's own
    map asks nothing for GET, while the admin refuses a user without it."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW}
