"""factory_boy factories for Django's own models, shared by the cross-app tests."""

import factory
from django.contrib.auth.models import Permission, User


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A staff user with the given permissions: `permissions=["receivers.view_event"]`."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff-{n}")
    password = factory.django.Password("pw")
    is_staff = True

    @factory.post_generation
    def permissions(user, create, names, **kwargs):
        for name in names or ():
            app_label, codename = name.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
