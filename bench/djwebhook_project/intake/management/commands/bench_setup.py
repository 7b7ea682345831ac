"""Create one django-webhook Webhook per target URL, subscribed to intake.Event/create."""

from django.core.management.base import BaseCommand
from django_webhook.models import Webhook, WebhookSecret, WebhookTopic


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("urls", nargs="+")

    def handle(self, *args, urls, **options):
        Webhook.objects.all().delete()
        topic = WebhookTopic.objects.get(name="intake.Event/create")
        for n, url in enumerate(urls):
            webhook = Webhook.objects.create(url=url)
            webhook.topics.set([topic])
            WebhookSecret.objects.create(webhook=webhook, token=f"djw-bench-secret-{n:04d}")
        self.stdout.write(f"{len(urls)} webhook(s)")
