"""The web listener: started by `mailspec serve` with the mail certificate, printed in its
banner; /healthz says it is alive, /readyz names each dependency that is not ready."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from web_client import Web, reference

from reference.state.server import RedisServer
from reference.testing import ClamdServer, serve_process, write_config


def test_serve_opens_the_web_listener_and_prints_it(tmp_path: Path) -> None:
    served = serve_process(tmp_path / "var", write_config(tmp_path / "mailspec.toml"))
    try:
        banner = "".join(served.output)
        port = served.ports["web"]
        assert f"  web          https://127.0.0.1:{port}" in banner
        assert f"https://127.0.0.1:{port}/api/v1" in banner and "mailspec token create" in banner
        # HTTPS with the mail listeners' certificate: verified against it, for the mail host.
        ctx = served.tls_context()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="mail.example.test") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")
            answer = tls.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200") and b'{"status": "alive"}' in answer
    finally:
        assert served.stop() == 0


async def test_ready_names_what_is_not(tmp_path: Path) -> None:
    with (
        ClamdServer(tmp_path / "clamd") as clamd,
        RedisServer(tmp_path / "redis") as redis,
        reference(tmp_path, **{"antivirus.clamd": clamd.address, "state.url": redis.url}) as (
            ref,
            _,
        ),
    ):
        async with Web(ref) as web:
            r = await web.call("GET", "/readyz")
            assert (r.status, r.body["failing"]) == (200, [])
            assert set(r.body["checks"]) == {"listeners", "spool", "directory", "redis", "clamd"}
            assert (await web.call("GET", "/healthz")).body == {"status": "alive"}

            clamd.stop()
            r = await web.call("GET", "/readyz")
            assert (r.status, r.body["status"], r.body["failing"]) == (503, "not ready", ["clamd"])
            assert "no PONG" in r.body["checks"]["clamd"]
            assert r.body["checks"]["redis"] == "ok"

            redis.stop()
            r = await web.call("GET", "/readyz")
            assert r.body["failing"] == ["clamd", "redis"]

            spool = ref.app.spool.root
            shutil.rmtree(spool)
            spool.write_text("not a directory")  # the disk under the spool gone wrong
            r = await web.call("GET", "/readyz")
            assert r.body["failing"] == ["clamd", "redis", "spool"]
            assert "cannot write" in r.body["checks"]["spool"]

            async def close_mx() -> None:
                mx = ref.app.servers[0]
                mx.close()
                await mx.wait_closed()

            ref.run(close_mx())
            r = await web.call("GET", "/readyz")
            assert r.body["failing"] == ["clamd", "listeners", "redis", "spool"]
            assert "mx" in r.body["checks"]["listeners"]

            ref.directory.close()
            r = await web.call("GET", "/readyz")
            assert r.status == 503 and "directory" in r.body["failing"]
            # Alive all the same: the process answers; it only is not ready for mail.
            assert (await web.call("GET", "/healthz")).status == 200
        spool.unlink()
