"""The API asks for the permission the admin asks for the same thing (docs/api.md)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def requires(*perms: str) -> type[BasePermission]:
    """A permission class: a staff user holding every one of `perms` ("app.codename")."""

    class Requires(BasePermission):
        message = f"Needs the permission {', '.join(perms)}."

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_staff and user.has_perms(perms))

    Requires.__name__ = "Requires_" + "_".join(p.replace(".", "_") for p in perms)
    return Requires
