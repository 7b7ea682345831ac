import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from receivers import sources
from receivers.models import Source, SourceSecret
from receivers.providers.base import token_digest
from receivers.tests.factories import make_source
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/receivers/source/"


def test_create_source_generates_one_secret_and_returns_it():
    source, secrets = sources.create_source("gridx-a", "gridx", description="main")
    assert len(secrets) == 1 and secrets[0].startswith("whsec_")
    assert list(source.secrets.values_list("value", flat=True)) == secrets
    assert source.description == "main"


def test_create_source_with_given_secrets_or_none():
    _, given = sources.create_source("jedlix-a", "jedlix", secrets=["my-api-key-0123456789"])
    assert given == ["my-api-key-0123456789"]
    source, none = sources.create_source("open-a", "openvolt", secrets=[], verify_nothing=True)
    assert none == [] and not source.secrets.exists()


def test_rotate_keeps_old_secrets_valid_for_the_grace_period(source):
    old = source.secrets.get()
    soon = SourceSecret.objects.create(
        source=source,
        value="whsec_expiring-soon-000000",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    new_value = sources.rotate_secret(source, grace_hours=72)
    old.refresh_from_db()
    soon.refresh_from_db()
    assert timedelta(hours=71) < old.expires_at - timezone.now() <= timedelta(hours=72)
    assert soon.expires_at - timezone.now() <= timedelta(hours=1)
    active = set(
        SourceSecret.objects.filter(source=source).active().values_list("value", flat=True)
    )
    assert active == {old.value, soon.value, new_value}
    later = timezone.now() + timedelta(hours=73)
    assert set(
        SourceSecret.objects.filter(source=source).active(later).values_list("value", flat=True)
    ) == {new_value}


def test_admin_add_shows_the_generated_secret_once(admin_client):
    response = admin_client.post(
        "/admin/receivers/source/add/",
        {
            "slug": "edrv-main",
            "provider": "edrv",
            "description": "",
            "is_active": "on",
            "allowed_ips": "",
            "tolerance_seconds": "300",
            "hmac_header": "",
            "hmac_algorithm": "sha256",
            "hmac_encoding": "hex",
            "hmac_prefix": "",
            "hmac_template": "{body}",
            "secret": "",
        },
        follow=True,
    )
    source = Source.objects.get(slug="edrv-main")
    secret = source.secrets.get().value
    assert any(secret in m for m in messages_of(response))
    # Shown once: neither the list nor the page shows it again.
    assert secret not in admin_client.get(CHANGELIST).content.decode()
    page = admin_client.get(reverse("admin:receivers_source_change", args=[source.pk]))
    assert secret not in page.content.decode()
    assert source.secrets.get().masked in page.content.decode()


def test_admin_add_keeps_a_pasted_secret_and_shows_it_masked(admin_client):
    response = admin_client.post(
        "/admin/receivers/source/add/",
        {
            "slug": "jedlix-main",
            "provider": "jedlix",
            "is_active": "on",
            "tolerance_seconds": "300",
            "hmac_algorithm": "sha256",
            "hmac_encoding": "hex",
            "hmac_template": "{body}",
            "secret": "the-jedlix-api-key-42",
        },
        follow=True,
    )
    # Kept as a digest: Jedlix sends the key itself, so an equality check is all it needs.
    stored = Source.objects.get(slug="jedlix-main").secrets.get().value
    assert stored == token_digest("the-jedlix-api-key-42")
    text = " ".join(messages_of(response))
    assert "****y-42" in text and "the-jedlix-api-key-42" not in text


def test_changelist_shows_receive_url_masked_secret_and_warnings(admin_client, settings):
    settings.HUB_PUBLIC_URL = "https://hub.example.com"
    signed = make_source(slug="gridx-ok")[0]
    make_source(slug="gridx-bare", secrets=0)[0]
    make_source("openvolt", slug="open-token")[0]
    make_source("standard", slug="trusting", verify_nothing=True)[0]
    page = admin_client.get(CHANGELIST).content.decode()
    assert "https://hub.example.com/hooks/gridx-ok/" in page
    assert 'data-copy="https://hub.example.com/hooks/gridx-ok/"' in page
    assert signed.secrets.get().value not in page
    assert signed.secrets.get().masked in page
    assert "Verifies nothing" in page
    assert "No active secret" in page
    assert "Openvolt signs nothing" in page
    assert page.count('class="hub-warning"') == 3


def test_url_token_providers_get_the_url_with_the_secret_once(admin_client):
    response = admin_client.post(
        "/admin/receivers/source/add/",
        {
            "slug": "openvolt-main",
            "provider": "openvolt",
            "is_active": "on",
            "tolerance_seconds": "300",
            "hmac_algorithm": "sha256",
            "hmac_encoding": "hex",
            "hmac_template": "{body}",
        },
        follow=True,
    )
    (shown,) = [m for m in messages_of(response) if "/hooks/openvolt-main/?token=" in m]
    secret = re.search(r"token=([^<\s]+)", shown).group(1)
    url = "/hooks/openvolt-main/?" + urlencode({"token": secret})
    assert url in shown
    assert Source.objects.get(slug="openvolt-main").secrets.get().value == token_digest(secret)


def test_change_page_shows_the_warning_as_a_banner(admin_client):
    source = make_source(slug="trusting", verify_nothing=True)[0]
    page = admin_client.get(reverse("admin:receivers_source_change", args=[source.pk]))
    assert 'class="hub-banner"' in page.content.decode()
    assert "Verifies nothing" in page.content.decode()


def test_verification_warning_rules():
    assert sources.verification_warning(Source(provider="gridx"), 1) == ""
    assert "refused" in sources.verification_warning(Source(provider="gridx"), 0)
    assert "refused" in sources.verification_warning(Source(provider="openvolt"), 0)
    assert "signs nothing" in sources.verification_warning(Source(provider="openvolt"), 1)
    fenced = Source(provider="openvolt", allowed_ips="203.0.113.0/24")
    assert sources.verification_warning(fenced, 1) == ""
    assert "Verifies nothing" in sources.verification_warning(
        Source(provider="gridx", verify_nothing=True), 1
    )


def test_rotate_action_shows_new_secret_once_and_logs_it(admin_client, source):
    old = source.secrets.get()
    response = admin_client.post(
        CHANGELIST, {"action": "rotate_secrets", "_selected_action": [source.pk]}, follow=True
    )
    new = source.secrets.exclude(pk=old.pk).get()
    assert any(new.value in m for m in messages_of(response))
    old.refresh_from_db()
    assert old.expires_at is not None
    entry = LogEntry.objects.get(object_id=str(source.pk), action_flag=CHANGE)
    assert "Rotated the secret" in entry.change_message
    assert new.value not in entry.change_message


def test_rotate_page_takes_grace_hours(admin_client, source):
    url = reverse("admin:receivers_source_rotate_secret", args=[source.pk])
    assert "Rotate secret" in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"grace_hours": "2", "secret": ""}, follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "admin:receivers_source_change", args=[source.pk]
    )
    old = source.secrets.order_by("pk").first()
    assert old.expires_at - timezone.now() <= timedelta(hours=2)
    assert source.secrets.count() == 2
    assert LogEntry.objects.filter(object_id=str(source.pk)).exists()


def test_rotation_needs_the_change_permission(client, source):
    client.force_login(StaffUserFactory(username="viewer", permissions=["receivers.view_source"]))
    url = reverse("admin:receivers_source_rotate_secret", args=[source.pk])
    assert client.post(url, {"grace_hours": "1"}).status_code == 403
    page = client.get(CHANGELIST).content.decode()
    assert "rotate_secrets" not in page
    assert source.secrets.count() == 1


def test_replace_secrets_ends_the_old_ones(source):
    old = source.secrets.get()
    assert sources.replace_secrets(source, ["whsec_replacement-0000000001"]) == [
        "whsec_replacement-0000000001"
    ]
    assert list(
        SourceSecret.objects.filter(source=source).active().values_list("value", flat=True)
    ) == ["whsec_replacement-0000000001"]
    old.refresh_from_db()
    assert old.expires_at <= timezone.now()
