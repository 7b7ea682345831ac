"""The subscribers of the fan-out benchmark: one tiny asyncio HTTP/1.1 server, loopback only.

    POST /ok/<name>     answer 200 at once and record (arrival time, name, body)
    POST /hang/<name>   accept, read the request, never answer (the connection stays open)
    GET  /_stats        counts per name, and this process's CPU seconds
    GET  /_dump         every recorded arrival as [time, name, event id, webhook id]
    POST /_reset        forget everything recorded

The event id is read from the body only in /_dump, never on the hot path: a gridX body (the
hub relays the original bytes) has it at "id", a django-webhook body at "object.external_id".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
records: list[tuple[float, str, bytes, str]] = []
hanging: list[asyncio.Transport] = []
hang_arrivals: dict[str, int] = {}


def event_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data.get("object"), dict):
        return data["object"].get("external_id")
    value = data.get("id")
    return value if isinstance(value, str) else None


def reply_json(data) -> bytes:
    body = json.dumps(data).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Handler(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        self.hung = False

    def connection_lost(self, exc):
        if self.transport in hanging:
            hanging.remove(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.hung:
            return
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            length, webhook_id, close = 0, "", False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    webhook_id = value.strip().decode()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = head[0].split(b" ")[:2]
            if not self.handle(method, path.decode(), body, webhook_id):
                return
            if close:
                self.transport.close()
                return

    def handle(self, method: bytes, path: str, body: bytes, webhook_id: str) -> bool:
        if path.startswith("/ok/"):
            records.append((time.time(), path[4:].strip("/"), body, webhook_id))
            self.transport.write(OK)
        elif path.startswith("/hang/"):
            name = path[6:].strip("/")
            hang_arrivals[name] = hang_arrivals.get(name, 0) + 1
            self.hung = True
            hanging.append(self.transport)
            return False
        elif path == "/_stats":
            counts: dict[str, int] = {}
            for _, name, _, _ in records:
                counts[name] = counts.get(name, 0) + 1
            self.transport.write(
                reply_json(
                    {
                        "counts": counts,
                        "total": len(records),
                        "hang_arrivals": hang_arrivals,
                        "hanging_connections": len(hanging),
                        "cpu_seconds": time.process_time(),
                    }
                )
            )
        elif path == "/_dump":
            rows = [[t, name, event_id(body), wid] for t, name, body, wid in records]
            self.transport.write(reply_json(rows))
        elif path == "/_reset" and method == b"POST":
            records.clear()
            hang_arrivals.clear()
            for transport in list(hanging):
                transport.close()
            self.transport.write(reply_json({"reset": True}))
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=1024)
    print(f"target listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
