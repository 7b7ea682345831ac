"""Delete old events by hand, as the hourly beat job does, and say how it goes."""

import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from receivers.models import Event
from receivers.retention import BATCH, purge_old_events

PROGRESS_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Delete events older than HUB_RETENTION_DAYS with their deliveries and attempts, "
        "in small batches that never block receiving."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days (default: HUB_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=BATCH, help=f"Events per batch (default {BATCH})."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )

    def handle(self, *args, days: int | None, batch_size: int, dry_run: bool, **options):
        days = settings.HUB_RETENTION_DAYS if days is None else days
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        cutoff = timezone.now() - timedelta(days=days)
        total = Event.objects.filter(received_at__lt=cutoff).count()
        when = f"{cutoff:%Y-%m-%d %H:%M:%S} UTC"
        if dry_run:
            self.stdout.write(f"Dry run: {total} event(s) received before {when} would be deleted.")
            return
        self.stdout.write(
            f"Deleting {total} event(s) received before {when} ({days} days kept), "
            f"{batch_size} per batch."
        )
        started = time.monotonic()
        last_report = started

        def progress(deleted: int) -> None:
            nonlocal last_report
            now = time.monotonic()
            # A line per second at most: a million old events must not print a thousand lines.
            if now - last_report >= PROGRESS_SECONDS or deleted >= total:
                share = f" ({min(100, 100 * deleted // total)}%)" if total else ""
                self.stdout.write(f"  deleted {deleted} of {total}{share}")
                last_report = now

        deleted = purge_old_events(days=days, batch_size=batch_size, progress=progress)
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {deleted} event(s) with their deliveries and attempts in {elapsed:.1f} s."
            )
        )
