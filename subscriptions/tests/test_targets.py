"""Subscription targets: one validator for the admin and the API, every IPv6 spelling of an
internal IPv4 address refused, and a connection only ever to the address that was checked."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.test import override_settings

from receivers.tests.factories import EventFactory
from subscriptions import sender, targets
from subscriptions.models import Delivery, DeliveryStatus, Subscription
from subscriptions.services import drain, fanout
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import TestReceiver

pytestmark = pytest.mark.django_db

INTERNAL_TARGETS = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://good@127.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://10.1.2.3/hook",
    "http://2130706433/hook",
    # IPv6 spellings of internal IPv4 addresses.
    "http://[::127.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://[2002:a9fe:a9fe::1]/hook",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",
]


@pytest.fixture
def no_dns(monkeypatch):
    """Names other than localhost (in /etc/hosts) resolve to nothing: no query leaves."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host != "localhost":
            try:
                socket.inet_aton(host)
            except OSError:
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    raise socket.gaierror(socket.EAI_NONAME, "no DNS in this test") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.mark.parametrize("url", INTERNAL_TARGETS)
@pytest.mark.usefixtures("no_dns")
@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_the_api_refuses_internal_targets(api, url):
    answer = api.post(
        "/api/v1/subscriptions/", {"name": "x", "url": url, "event_types": ["*"]}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert "url" in answer.json()
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("url", INTERNAL_TARGETS)
@pytest.mark.usefixtures("no_dns")
@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_the_model_refuses_internal_targets(url):
    with pytest.raises(ValidationError) as refused:
        Subscription(name="x", url=url, event_types=["*"]).full_clean()
    assert "url" in refused.value.message_dict


@pytest.mark.parametrize(
    "address",
    [
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::a00:1",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "::ffff:10.0.0.1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)
def test_embedded_internal_ipv4_addresses_are_internal(address):
    assert targets.internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_not_internal(address):
    assert not targets.internal(ipaddress.ip_address(address))


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=True)
def test_private_targets_may_be_allowed(api):
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "x", "url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
        format="json",
    )
    assert answer.status_code == 201


# DNS rebinding ------------------------------------------------------------------------------

PUBLIC = "93.184.216.34"
NAME = "hooks.example.test"


class Network:
    """A resolver whose answers are scripted, and connections to any address that land on one
    local server (nothing leaves the machine); records where the hub connected."""

    def __init__(self, monkeypatch, answers: list[str], local_port: int):
        self.answers = answers
        self.lookups: list[str] = []
        self.connected_to: list[str] = []
        real_connect, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host != NAME:
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups.append(host)
            address = self.answers[min(len(self.lookups), len(self.answers)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        def create_connection(address, *args, **kwargs):
            self.connected_to.append(address[0])
            return real_connect(("127.0.0.1", local_port), *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture
def receiver():
    with TestReceiver() as running:
        yield running


def deliver(sub: Subscription) -> Delivery:
    fanout.fan_out([EventFactory().pk])
    drain.drain_subscription(sub.pk)
    return Delivery.objects.get(subscription=sub)


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_a_name_that_resolves_elsewhere_the_second_time_is_never_connected_to(
    monkeypatch, receiver
):
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    network = Network(monkeypatch, [PUBLIC, "127.0.0.1"], port)
    sub = SubscriptionFactory(url=f"http://{NAME}:{port}/hook")
    delivery = deliver(sub)
    # Only ever to an address that was checked: never to the name (resolved again by the
    # connection) and never to the internal second answer.
    assert network.lookups and set(network.connected_to) <= {PUBLIC}
    assert delivery.status != DeliveryStatus.SUCCEEDED or network.connected_to == [PUBLIC]


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_the_checked_address_is_connected_to_with_the_host_header_kept(monkeypatch, receiver):
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    network = Network(monkeypatch, [PUBLIC], port)
    sub = SubscriptionFactory(url=f"http://{NAME}:{port}/hook")
    assert deliver(sub).status == DeliveryStatus.SUCCEEDED
    assert network.connected_to == [PUBLIC]
    (got,) = receiver.wait_for(1)
    assert got.headers["host"] == f"{NAME}:{port}"


# TLS: the name is still the server name and the name the certificate must carry -------------


def certificate_for(name: str, tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate names NAME; records the SNI it saw."""
    cert, key = certificate_for(NAME, tmp_path)
    seen: dict[str, list] = {"sni": [], "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            seen["requests"].append(self.headers["host"])
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1], cert, seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def trust(monkeypatch):
    def trusting(cert_path: str) -> None:
        context = ssl.create_default_context(cafile=cert_path)
        monkeypatch.setattr(sender, "tls_context", lambda: context)

    return trusting


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_https_checks_the_certificate_of_the_name_at_the_checked_address(
    monkeypatch, tls_server, trust
):
    port, cert, seen = tls_server
    trust(cert)
    network = Network(monkeypatch, [PUBLIC], port)
    sub = SubscriptionFactory(url=f"https://{NAME}:{port}/hook")
    assert deliver(sub).status == DeliveryStatus.SUCCEEDED
    assert network.connected_to == [PUBLIC]
    assert seen["sni"] == [NAME] and seen["requests"] == [f"{NAME}:{port}"]


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_https_refuses_a_certificate_for_another_name(monkeypatch, tls_server, tmp_path, trust):
    port, _, seen = tls_server
    other_cert, _ = certificate_for("other.example.test", tmp_path)
    trust(other_cert)
    Network(monkeypatch, [PUBLIC], port)
    sub = SubscriptionFactory(url=f"https://{NAME}:{port}/hook")
    delivery = deliver(sub)
    assert delivery.status == DeliveryStatus.RETRYING
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error
    assert seen["requests"] == []
