"""Create an API token for a user and show it once: only its digest is kept."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Create a token for the management API (shown once; only its digest is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        _, token = AuthToken.objects.create(user, expiry=None)
        self.stdout.write(f"API token for {username} (shown once): {token}")
        self.stdout.write(f"Send it as: Authorization: Token {token}")
