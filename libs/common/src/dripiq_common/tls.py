"""TLS for gRPC: server credentials that pick up rotated files, and channel credentials that
present our own certificate (mutual TLS between the suite's services).

Certificates are files (cert-manager writes them into a Secret volume and rotates them in place):
the server reads them again, for the next handshake, whenever one of them changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: this process's certificate chain and key, and the CA that signs the suite's
    certificates (to verify peers)."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What changes when any of the files is replaced or rewritten."""
        stats = [p.stat() for p in (self.cert, self.key, self.ca)]
        return tuple((s.st_mtime_ns, s.st_ino) for s in stats)


@dataclass
class ReloadingServerCredentials:
    """Server credentials whose certificate, key and client CA are read again when the files
    change; a half-written rotation (unreadable files) keeps the previous ones."""

    files: TlsFiles
    # On: only a client certificate the CA signed gets a connection (the internal port). Off:
    # no client certificate is asked for (the public port; callers bring a bearer token).
    require_client_cert: bool = False
    _stamp: tuple[tuple[int, int], ...] = field(default=(), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=self.require_client_cert
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self.files.read()
        self._stamp = self.files.stamp()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # gRPC asks before every handshake, from its own threads.
        with self._lock:
            try:
                if self.files.stamp() == self._stamp:
                    return None
                configuration = self._configuration()
            except (OSError, ValueError) as exc:
                log.warning("tls.reload_failed", cert=str(self.files.cert), error=repr(exc))
                return None
        log.info("tls.reloaded", cert=str(self.files.cert))
        return configuration


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """A client's credentials: the suite's CA to verify servers, and our certificate for mTLS."""
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
