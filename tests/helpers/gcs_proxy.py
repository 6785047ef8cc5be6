"""The proxy process in front of fake-gcs-server for tests/helpers/gcs_emulator.py (stdlib only; run as a script).

    python tests/helpers/gcs_proxy.py EMULATOR_PORT CERT KEY LOG     # prints "TUNNEL_PORT FRONT_PORT", serves until killed

TUNNEL_PORT is TensorFlow's https_proxy: a CONNECT to one of GOOGLE_HOSTS is answered by terminating TLS
here with the test certificate and serving the tunnel from the emulator on 127.0.0.1 (the host named is
never contacted; other hosts are refused). FRONT_PORT is a plain-http reverse proxy, the
STORAGE_EMULATOR_HOST of google-cloud-storage. Both mend the same few emulator/GCS differences
(_ForwardHandler). LOG gets one line per request, and `TUNNEL <host>` per tunnel.
"""
from __future__ import annotations

import http.client
import http.server
import re
import ssl
import sys
import threading

# The hosts TF 2.x hard-codes: JSON API and uploads on www, object reads on storage.
GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
TUNNEL_LOG_PREFIX = "TUNNEL "


_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "content-length"}


def add_batch_content_ids(body: bytes, content_type: str) -> bytes:
    """A JSON-API batch body (multipart/mixed) whose parts all carry a Content-ID header.

    google-cloud-storage's batches (Beam's rename = copy_batch + delete_batch) send parts without one,
    which GCS accepts and fake-gcs-server silently skips (answering an empty batch)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return body
    delimiter = b"--" + match.group(1).encode()
    pieces = body.split(delimiter)
    for i in range(1, len(pieces)):
        part = pieces[i]
        headers = re.split(rb"\r?\n\r?\n", part.lstrip(b"\r\n"), maxsplit=1)[0]
        if part.startswith(b"--") or b"content-id:" in headers.lower():
            continue  # the closing delimiter, or a part that has one
        newline = b"\r\n" if part.startswith(b"\r\n") else b"\n"
        pieces[i] = newline + b"Content-ID: <part-%d>" % i + part
    return delimiter.join(pieces)


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    """A reverse proxy to the emulator's plain-http port: each request goes on unchanged (method, path, Host,
    body) but for three differences between fake-gcs-server and GCS, mended here:
    * hop-by-hop headers are dropped, among them TF's `Transfer-Encoding: identity`, which Go's HTTP server
      (the emulator) rejects with 501 and Google accepts;
    * batch parts get the Content-ID the emulator needs (add_batch_content_ids);
    * upload Locations the emulator names http://www.googleapis.com/... are rewritten to the URL clients
      reach this front at (server.public_url), as a reverse proxy does (real GCS answers with https)."""

    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        server: _FrontServer = self.server  # type: ignore[assignment]
        body = self._body()
        if self.path.startswith("/batch/"):
            body = add_batch_content_ids(body, self.headers.get("Content-Type", ""))
        upstream = http.client.HTTPConnection("127.0.0.1", server.target_port, timeout=120)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    upstream.putheader(key, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        server.log(f"{self.command} {self.headers.get('Host', '')}{self.path} -> {response.status}")
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() == "location":
                value = server.emulator_urls.sub(server.public_url, value)
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        self.server.log(format % args)  # type: ignore[attr-defined]


class _TunnelHandler(_ForwardHandler):
    """The https_proxy for TF: CONNECT to one of GOOGLE_HOSTS is answered 200, TLS is terminated with the test
    certificate and the tunnel is served by _ForwardHandler. The host named is never contacted."""

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if host not in GOOGLE_HOSTS:
            self.send_error(403, f"the test proxy only tunnels to {', '.join(GOOGLE_HOSTS)}")
            return
        self.server.log(f"{TUNNEL_LOG_PREFIX}{host}")  # type: ignore[attr-defined]
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            tls = self.server.tls.wrap_socket(self.connection, server_side=True)  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError) as e:
            self.server.log(f"TLS handshake for {host} failed: {e}")  # type: ignore[attr-defined]
            return
        try:
            _ForwardHandler(tls, self.client_address, self.server)
        except OSError:
            pass  # closed by the client
        finally:
            tls.close()

    def _refuse(self) -> None:
        self.send_error(405, "the test proxy only accepts CONNECT")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse


class _FrontServer(http.server.ThreadingHTTPServer):
    """One listening port of the proxy process (a thread per connection) in front of the emulator."""

    daemon_threads = True

    def __init__(self, handler: type, target_port: int, log: "_Log", public_url: str | None = None):
        super().__init__(("127.0.0.1", 0), handler)
        self.target_port = target_port
        self.public_url = public_url or f"http://127.0.0.1:{self.server_address[1]}"
        self.emulator_urls = re.compile(r"^https?://(%s|127\.0\.0\.1:%d)(?=[/?]|$)"
                                        % ("|".join(map(re.escape, GOOGLE_HOSTS)), target_port))
        self.log = log
        self.tls: ssl.SSLContext | None = None


class _Log:
    def __init__(self, path: str):
        self._lock = threading.Lock()
        self._file = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")


def serve(argv: list[str]) -> None:
    """EMULATOR_PORT CERT KEY LOG: prints "TUNNEL_PORT FRONT_PORT", then serves until killed."""
    target_port, cert_file, key_file, log_file = argv
    log = _Log(log_file)
    tunnel = _FrontServer(_TunnelHandler, int(target_port), log, public_url=f"https://{GOOGLE_HOSTS[0]}")
    tunnel.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tunnel.tls.load_cert_chain(cert_file, key_file)
    front = _FrontServer(_ForwardHandler, int(target_port), log)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    print(tunnel.server_address[1], front.server_address[1], flush=True)
    tunnel.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1:])
