"""Telling people about alerts: a mail to HUB_ALERT_EMAILS (Django's mail) and a Slack-compatible
message to HUB_ALERT_SLACK_URL, each at most once per alert.

A worker claims an alert's notices with a conditional UPDATE of `notified_at` before sending, so
two workers never both send; a notice that fails is logged, not retried (the alert stays on the
dashboard, and its event goes through the retried delivery path).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from .. import sender
from ..models import Alert, AlertKind
from ..payloads import USER_AGENT
from ..targets import TargetRefused, check_target

logger = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 10
GOOD_NEWS = {AlertKind.SUBSCRIPTION_RECOVERED}
# Notices older than this are not sent any more: a hub that was down does not mail old news.
NOTIFY_WITHIN_SECONDS = 3600


def notify_pending() -> int:
    """Send the notices of every alert that has none yet; returns how many alerts were sent."""
    now = timezone.now()
    waiting = Alert.objects.filter(notified_at=None).order_by("opened_at", "pk")
    sent = 0
    for alert in waiting.select_related("subscription", "source")[:100]:
        if not Alert.objects.filter(pk=alert.pk, notified_at=None).update(notified_at=now):
            continue  # another worker has it
        if (now - alert.opened_at).total_seconds() > NOTIFY_WITHIN_SECONDS:
            continue
        mail(alert)
        slack(alert)
        sent += 1
    return sent


def dashboard_url() -> str:
    return f"{settings.HUB_PUBLIC_URL}/admin/dashboard/"


def text_of(alert: Alert) -> str:
    state = "cleared" if alert.cleared_at and alert.kind not in GOOD_NEWS else "open"
    return (
        f"{alert.message}\n\n"
        f"Alert: {alert.kind} ({state}), raised {alert.opened_at:%Y-%m-%d %H:%M:%S} UTC.\n"
        f"Dashboard: {dashboard_url()}\n"
    )


def mail(alert: Alert) -> None:
    recipients = settings.HUB_ALERT_EMAILS
    if not recipients:
        return
    message = EmailMessage(
        # One line: a name or a reason with a line break must not break the header.
        subject=" ".join(f"[hub] {alert.kind}: {alert.message}".split())[:200],
        body=text_of(alert),
        to=recipients,
    )
    try:
        message.send()
    except Exception as exc:  # noqa: BLE001 - any mail failure: logged, the alert stays shown
        logger.warning("alert %s: mail not sent: %s", alert.pk, exc)


def slack_message(alert: Alert) -> dict:
    mark = ":white_check_mark:" if alert.kind in GOOD_NEWS else ":rotating_light:"
    return {
        "text": f"{mark} *{alert.kind}*: {alert.message} <{dashboard_url()}|dashboard>",
        "username": "hub",
    }


def slack(alert: Alert) -> None:
    url = settings.HUB_ALERT_SLACK_URL
    if not url:
        return
    try:
        # The same checks as a subscription's target: no internal address unless allowed.
        check_target(url)
    except TargetRefused as exc:
        logger.warning("alert %s: Slack message not sent: %s", alert.pk, exc)
        return
    body = json.dumps(slack_message(alert)).encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    result = sender.post(
        sender.http_client(), url, body, headers, timezone.now(), timeout=SLACK_TIMEOUT_SECONDS
    )
    if not result.succeeded:
        logger.warning(
            "alert %s: Slack message not taken: %s", alert.pk, result.error or result.status_code
        )
