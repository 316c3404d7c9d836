"""Our protocol client beside the official SDK (``qcloudsms-py``): requests per second and this
process's CPU per request, sending the same template sends to the simulator, in the same run.

Three senders, each built once and then called N times in a row (one request at a time, a
distinct number each, every answer checked for result 0):

- ours: ``SmsClient.send`` (``worker.tencent``), one keep-alive connection from its pool;
- the SDK as shipped: ``SmsSingleSender.send_with_param`` over the SDK's own HTTP client,
  which opens a new connection for every call;
- the SDK over a ``requests.Session`` (keep-alive), the best the SDK can do.

The SDK's bundled response reader calls ``json.loads(..., encoding=...)``, which Python 3.9
removed; both SDK senders are handed, through its documented ``httpclient`` hook, a client whose
reader works, the shipped one otherwise unchanged
(tests/simulator/test_official_sdk.py does the same).

The simulator runs in its own process at zero latency (``sms-worker simulator``), so a
request's time is the two processes' work. CPU is ``time.process_time`` of this process alone:
the client's cost, which the server shares no part of. The senders alternate, warmed up; each
figure is the median of the runs.

    python -m bench.client_vs_sdk [--requests 2000] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from qcloudsms_py import SmsSingleSender
from qcloudsms_py.httpclient import HTTPClientInterface, HTTPResponse, HTTPSimpleClient

from bench.pipeline_throughput import log_folder, simulator_process
from worker.tencent import Outcome, SmsClient
from worker.tencent.types import Phone, Template

TARGET_CPU_RATIO = 3.0  # "several times cheaper"
APPKEY = "5f03a35d00ee52a21327ab048186a2c4"  # the documented example key
SDKAPPID = "1400000000"
TEMPLATE, PARAMS, SIGN = 100001, ("482913", "5"), "腾讯云"
WARM_UP = 50

Send = Callable[[str], bool]  # a mainland number -> whether the gateway said result 0


class _Response(HTTPResponse):  # type: ignore[misc]
    def json(self) -> Any:
        return json.loads(self.body)


class ShippedHttpClient(HTTPSimpleClient):  # type: ignore[misc]
    """The SDK's own client (http.client, a connection per call), with a reader that works."""

    def fetch(self, req: Any) -> _Response:
        answer = super().fetch(req)
        return _Response(req, answer.code, answer.body, answer.headers, answer.reason)


class RequestsHttpClient(HTTPClientInterface):  # type: ignore[misc]
    """The SDK's requests, as they are, over one keep-alive ``requests.Session``."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def fetch(self, req: Any) -> _Response:
        answer = self.session.request(
            req.method, req.url, data=req.body, headers=req.headers or {}, timeout=10
        )
        return _Response(req, answer.status_code, answer.content, dict(answer.headers))


@contextmanager
def senders(gateway_url: str) -> Iterator[dict[str, Send]]:
    client = SmsClient(SDKAPPID, APPKEY, gateway_url)
    template = Template(TEMPLATE, PARAMS, SIGN)

    def ours(mobile: str) -> bool:
        return client.send(Phone("86", mobile), template).outcome is Outcome.OK

    def sdk_sender(http: Any) -> Send:
        sender = SmsSingleSender(SDKAPPID, APPKEY, httpclient=http)
        url = f"{gateway_url}/v5/tlssmssvr/sendsms"

        def send(mobile: str) -> bool:
            answer = sender.send_with_param(86, mobile, TEMPLATE, list(PARAMS), sign=SIGN, url=url)
            return answer["result"] == 0

        return send

    keep_alive = RequestsHttpClient()
    try:
        yield {
            "ours": ours,
            "sdk": sdk_sender(ShippedHttpClient(connect_timeout=10, request_timeout=10)),
            "sdk+keepalive": sdk_sender(keep_alive),
        }
    finally:
        client.close()
        keep_alive.session.close()


_numbers = itertools.count(1)


def distinct_numbers(count: int) -> list[str]:
    """Mainland numbers not used before in this run: no per-number limit is ever near."""
    return [f"137{next(_numbers):08d}" for _ in range(count)]


def measure(send: Send, count: int) -> tuple[float, float]:
    """(requests per second, CPU ms of this process per request) over ``count`` sends."""
    numbers = distinct_numbers(count)
    cpu, wall = time.process_time(), time.perf_counter()
    refused = sum(not send(number) for number in numbers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if refused:
        raise SystemExit(f"{refused} sends were not accepted: fix the bench")
    return count / wall, cpu * 1000 / count


def profile(send: Send, count: int, name: str) -> None:
    numbers = distinct_numbers(count)
    profiler = cProfile.Profile()
    profiler.enable()
    for number in numbers:
        send(number)
    profiler.disable()
    print(f"\nprofile of {count} sends, {name} (cProfile, by own time):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="sends per run and sender")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="then cProfile each sender")
    parser.add_argument("--keep-logs", action="store_true", help="print the log folder")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {}
    with (
        log_folder(keep=args.keep_logs) as folder,
        simulator_process(folder) as gateway_url,
        senders(gateway_url) as sends,
    ):
        for name, send in sends.items():
            measure(send, WARM_UP)
            runs[name] = []
        for run in range(1, args.runs + 1):
            for name, send in sends.items():
                rate, cpu = measure(send, args.requests)
                runs[name].append((rate, cpu))
                print(f"  run {run} {name:13} {rate:6.0f} req/s, client CPU {cpu:5.3f} ms each",
                      flush=True)  # fmt: skip
        if args.profile:
            for name, send in sends.items():
                profile(send, args.requests, name)
    report(runs, args, (load_before, os.getloadavg()))


def report(
    runs: dict[str, list[tuple[float, float]]],
    args: argparse.Namespace,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    print(
        f"\n{args.requests} sequential sends per run, median of {args.runs} runs, "
        f"{os.cpu_count()} cores, load average {load[0][0]:.1f} before, {load[1][0]:.1f} after"
    )
    rate = {name: statistics.median(r for r, _ in sides) for name, sides in runs.items()}
    cpu = {name: statistics.median(c for _, c in sides) for name, sides in runs.items()}
    print(f"{'sender':14} {'req/s':>6} {'CPU ms each':>12} {'CPU vs ours':>12}")
    for name in runs:
        print(f"{name:14} {rate[name]:6.0f} {cpu[name]:12.3f} {cpu[name] / cpu['ours']:11.2f}x")
    cheaper, rival = min((cpu[name] / cpu["ours"], name) for name in runs if name != "ours")
    verdict = "meets" if cheaper >= TARGET_CPU_RATIO else "MISSES"
    print(f"target: ours at least {TARGET_CPU_RATIO:g}x cheaper in CPU than the SDK: {verdict} "
          f"(the SDK's cheaper sender, {rival}, costs {cheaper:.2f}x ours)")  # fmt: skip


if __name__ == "__main__":
    main()
