"""A private certificate authority and a server certificate for the secured local stack, made with `openssl`.

Everything is generated into a folder of the state directory (never committed) and kept there: a second
`devstack up --secured` reuses it. The server certificate names ``localhost`` and ``127.0.0.1`` (clients
check the name), and the PEM files are what Kafka (``ssl.keystore.type=PEM``) and Redis (``tls-*-file``)
read directly, so no Java keystore tool is needed. Private keys are written with mode 0600.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream_app.errors import DevstackError

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity clients accept for a server certificate
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the server's certificate and key lie."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def server_keystore(self) -> Path:
        """Key, certificate and CA in one PEM file: Kafka's PEM keystore."""
        return self.folder / "server-keystore.pem"

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key,
                                         self.server_keystore))


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise DevstackError("openssl not found: the secured stack makes its certificates with it "
                            "(apt-get install openssl)")
    result = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DevstackError(f"openssl {args[0]} failed:\n{result.stderr.strip()}")


def create_ca(folder: Path, name: str = "casting-defect devstack CA") -> TlsFiles:
    """A self-signed CA (certificate and key) in `folder`; a test makes a second one to be untrusted."""
    files = TlsFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files.ca_key.name,
             "-out", files.ca_cert.name, "-days", str(CA_DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)
    files.ca_key.chmod(0o600)
    return files


def create_server_cert(files: TlsFiles) -> None:
    """A server key and a certificate signed by the CA in `files`, for localhost / 127.0.0.1."""
    folder = files.folder
    extensions = folder / "server.ext"
    extensions.write_text(f"subjectAltName={SERVER_NAMES}\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", files.server_key.name, "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=folder)
    files.server_key.chmod(0o600)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", files.ca_cert.name, "-CAkey", files.ca_key.name,
             "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(SERVER_DAYS), "-extfile", extensions.name,
             "-out", files.server_cert.name, cwd=folder)
    (folder / "server.csr").unlink()
    extensions.unlink()
    keystore = files.server_keystore
    fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(files.server_key.read_text() + files.server_cert.read_text() + files.ca_cert.read_text())


def ensure_tls_files(folder: Path) -> TlsFiles:
    """The CA and the server certificate in `folder`, made once and reused."""
    files = TlsFiles(folder)
    if not files.complete():
        create_ca(folder)
        create_server_cert(files)
    return files
