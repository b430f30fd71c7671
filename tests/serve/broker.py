"""A real MQTT broker for the tests: Debian's mosquitto on a free loopback port, optionally with
TLS (certificates made by openssl for the test) and a password file; killed with SIGKILL and
restarted on the same port like a broker that crashed."""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
PACKAGES = "mosquitto openssl"


@functools.cache
def mosquitto_unavailable() -> str | None:
    """Why no broker can run here, or None (``make test`` installs it)."""
    for program in (MOSQUITTO, MOSQUITTO_PASSWD, shutil.which("openssl") or "openssl"):
        if not os.path.exists(program) and shutil.which(program) is None:
            return f"{program} is not installed; apt-get install {PACKAGES}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker in ``directory`` on ``port``: `start`, `kill` (SIGKILL), `restart`.

    ``users``: {name: password} for a password file (anonymous clients are then refused);
    ``tls``: serve TLS only, with a CA, server certificate and a client certificate made here
    (`ca`, `client_cert`, `client_key`).
    """

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None,
                 tls: bool = False, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users, self.tls = users or {}, tls
        self.proc: subprocess.Popen | None = None
        self._write_config()

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @property
    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> Mosquitto:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the broker dies with its connections, no clean goodbye to anyone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> Mosquitto:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- files ----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1",
                 "persistence false",
                 f"log_dest file {self.dir / 'mosquitto.log'}",
                 "log_type error", "log_type warning", "log_type notice",
                 f"user {getpass.getuser()}",
                 "max_queued_messages 100000",
                 "set_tcp_nodelay true"]  # as docs/serving.md advises: no 40 ms Nagle waits
        if self.users:
            passwd = self.dir / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True,
                               capture_output=True)
            passwd.chmod(0o600)
            lines += [f"password_file {passwd}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            self._make_certificates()
            lines += [f"cafile {self.ca}", f"certfile {self.dir / 'server.crt'}",
                      f"keyfile {self.dir / 'server.key'}", "tls_version tlsv1.2"]
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def _make_certificates(self) -> None:
        """A CA, a server certificate for 127.0.0.1 / localhost and a client certificate."""
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=streamvxl test CA")
        ext = self.dir / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for name, subject in (("server", "/CN=localhost"), ("client", "/CN=agent")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                    "-out", f"{name}.csr", "-subj", subject)
            extra = ["-extfile", str(ext)] if name == "server" else []
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra)
