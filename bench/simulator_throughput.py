"""How many ``sendsms`` requests per second the gateway simulator answers, beside a bare baseline.

The simulator runs in its own process (uvicorn, httptools, uvloop when installed, access log
off), exactly as ``sms-worker simulator`` serves. A few client processes, each on one keep-alive
connection (``http.client``), send valid, signed template sends to distinct numbers for a fixed
time and count the answers with result 0. The same clients then drive a bare uvicorn ASGI app
that answers a fixed JSON body: the ceiling of this server stack on this machine. Each figure is
the median of several runs, alternating the two servers.

    python -m bench.simulator_throughput [--seconds 5] [--clients 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import socket
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

TARGET_PER_SECOND = 3000
APPKEY = "5f03a35d00ee52a21327ab048186a2c4"
SDKAPPID = "1400000000"
BODIES_PER_CLIENT = 2000
FIXED_ANSWER = b'{"result":0,"errmsg":"OK","ext":"","fee":1,"sid":"8:aaaaaaaaaaaaaaaaaaaa20240501"}'


# --- servers, each in its own process ----------------------------------------------------------


async def bare_app(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """The least an ASGI app can do per request: read the body, answer fixed JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(FIXED_ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": FIXED_ANSWER})


def serve(kind: str, ready: Connection) -> None:
    import importlib.util

    import uvicorn

    if kind == "simulator":
        from worker.simulator.app import SimulatorApp

        app: Any = SimulatorApp()
        lifespan = "on"
    else:
        app, lifespan = bare_app, "off"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    ready.send(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        lifespan=lifespan,
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])


# --- clients -----------------------------------------------------------------------------------


def signed_bodies(client: int) -> list[tuple[str, bytes]]:
    """Valid template sends to distinct numbers, signed now (valid for ten minutes)."""
    now = int(time.time())
    bodies = []
    for i in range(BODIES_PER_CLIENT):
        mobile = f"137{client:02d}{i:06d}"
        rnd = str(100000 + i)
        sig = hashlib.sha256(f"appkey={APPKEY}&random={rnd}&time={now}&mobile={mobile}".encode())
        body = {
            "tel": {"nationcode": "86", "mobile": mobile},
            "tpl_id": 100001,
            "params": [f"{i % 1000000:06d}", "5"],
            "sign": "腾讯云",
            "sig": sig.hexdigest(),
            "time": now,
            "ext": "",
            "extend": "",
        }
        path = f"/v5/tlssmssvr/sendsms?sdkappid={SDKAPPID}&random={rnd}"
        bodies.append((path, json.dumps(body, ensure_ascii=False).encode()))
    return bodies


def drive(port: int, client: int, seconds: float, start_at: float, results: Any) -> None:
    """Send on one keep-alive connection until ``seconds`` pass; report (ok, failed)."""
    bodies = signed_bodies(client)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    ok = failed = i = 0
    while time.perf_counter() < deadline and i < 10_000_000:
        path, body = bodies[i % len(bodies)]
        i += 1
        connection.request("POST", path, body, headers)
        answer = connection.getresponse().read()
        if answer.startswith(b'{"result":0,'):
            ok += 1
        else:
            failed += 1
    connection.close()
    results.put((ok, failed))


def measure(port: int, clients: int, seconds: float) -> tuple[float, int]:
    context = mp.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 1.5  # every client has built its bodies and is waiting
    processes = [
        context.Process(target=drive, args=(port, n, seconds, start_at, results))
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    totals = [results.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    ok = sum(t[0] for t in totals)
    failed = sum(t[1] for t in totals)
    return ok / seconds, failed


def start_server(kind: str) -> tuple[Any, int]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(kind, child), daemon=True)
    process.start()
    if not parent.poll(30):
        raise RuntimeError(f"the {kind} server did not start")
    port = int(parent.recv())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the {kind} server does not accept connections")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    servers = {kind: start_server(kind) for kind in ("simulator", "bare")}
    rates: dict[str, list[float]] = {kind: [] for kind in servers}
    try:
        for run in range(args.runs):
            for kind, (_, port) in servers.items():
                rate, failed = measure(port, args.clients, args.seconds)
                rates[kind].append(rate)
                print(f"  run {run + 1} {kind:9} {rate:8.0f} req/s  ({failed} not result 0)")
                if kind == "simulator" and failed:
                    raise SystemExit("the simulator refused benchmark requests: fix the bench")
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.join(timeout=10)

    simulator = statistics.median(rates["simulator"])
    bare = statistics.median(rates["bare"])
    print(f"sendsms through the simulator: {simulator:8.0f} req/s (median of {args.runs})")
    print(f"bare uvicorn, fixed JSON:      {bare:8.0f} req/s (median of {args.runs})")
    print(f"simulator / bare:              {simulator / bare:8.2f}")
    verdict = "meets" if simulator >= TARGET_PER_SECOND else "MISSES"
    print(
        f"target {TARGET_PER_SECOND} req/s: {verdict} "
        f"({args.clients} clients x 1 keep-alive connection, {args.seconds:g} s per run, "
        f"{mp.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
