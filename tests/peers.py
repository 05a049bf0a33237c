"""Real network peers the client tests talk to besides Triton: a port that accepts and never answers,
an HTTP server that answers every inference with a fixed error status, and a TLS-terminating proxy
in front of Triton's HTTP port (Triton's own HTTP endpoint has no TLS). Each runs in a thread of the
test process and stops when its ``with`` block ends."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class SilentPeer:
    """Accepts TCP connections (the kernel's backlog does) and never sends a byte."""

    def __enter__(self) -> "SilentPeer":
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"127.0.0.1:{self.sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class RefusingHTTPPeer:
    """Answers the model config like Triton, and every inference with ``status`` and Triton's JSON error
    body; counts the inference requests it got."""

    def __init__(self, status: int, message: str):
        self.status, self.message, self.infer_requests = status, message, 0

    def __enter__(self) -> "RefusingHTTPPeer":
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # /v2/models/<name>/config
                self._answer(200, {"name": self.path.split("/")[3], "max_batch_size": 16})

            def do_POST(self):  # /v2/models/<name>/infer
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                peer.infer_requests += 1
                self._answer(peer.status, {"error": peer.message})

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class TLSProxy:
    """HTTPS on a local port, forwarded byte for byte to ``upstream`` (host:port) in plain TCP."""

    def __init__(self, upstream: str, certfile: Path, keyfile: Path):
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(certfile), str(keyfile))
        self.handshakes = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> "TLSProxy":
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
            self.url = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "TLS proxy did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def connections_to(port: int) -> set[int]:
    """Socket inodes of this process with an established TCP connection to ``port`` on this machine."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(int(target[8:-1]))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
            if fields[3] == "01" and remote_port == port and inode in mine:  # 01: ESTABLISHED
                found.add(inode)
    return found
