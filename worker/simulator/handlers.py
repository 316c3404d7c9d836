"""The gateway's decisions: one request in, one answer out, in the gateway's order of checks.

Parse (1004), account (1019), sig (1003, 1001), clock (1021), then for sends: faults that stop
the request before processing, content (1014, 1012, 1036/1038/1048), numbers and group shape
(1016, 1046, 1034), length (1017), quiet hours (1029), and per number: scripted or random result
codes, frequency (1023-1025), blacklist (1015), balance (1031). What passes is delivered: an
inbox entry, a ``sid``, a ``fee``, a delivery report to come.

``pullsendstatus`` counts per number: ``request`` for every send the gateway took (authenticated,
and not cut off by an HTTP error or a drop before processing), ``success`` for those delivered,
``bill_number`` for their fees. Reports and replies are one pool for all accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from worker.simulator.billing import new_sid, segments
from worker.simulator.checks import (
    check_length,
    check_marketing_hours,
    check_phone,
    check_region,
)
from worker.simulator.config import Account
from worker.simulator.faults import (
    AFTER_PROCESSING,
    BEFORE_PROCESSING,
    PER_NUMBER,
    Step,
    StepKind,
)
from worker.simulator.parsing import (
    PullRequest,
    Refusal,
    SendRequest,
    StatsRequest,
    decode_body,
    parse_request,
)
from worker.simulator.reports import ReportCenter
from worker.simulator.signature import sig_matches
from worker.simulator.state import InboxEntry, LogEntry, NumberOutcome, SimulatorState
from worker.tencent.types import BEIJING, MAX_CLOCK_SKEW_SECONDS, MAX_GROUP_SIZE, Api, Phone

OK = "OK"


@dataclass(slots=True)
class Answer:
    """What to send back: a JSON payload (or a bare HTTP status), and what to do around it."""

    status: int = 200
    payload: dict[str, object] | None = None
    after: Step | None = None  # drop before answering, drop after processing, or slow
    latency: float = 0.0


class Gateway:
    def __init__(self, state: SimulatorState, reports: ReportCenter) -> None:
        self.state = state
        self.reports = reports
        self._day: tuple[int, str] = (-1, "")

    def handle(self, api_name: str, sdkappid: str, random: str, body: bytes | None) -> Answer:
        """Answer one ``POST /v5/tlssmssvr/{api_name}``; ``body`` None means it was too large."""
        state = self.state
        now = state.clock.now()
        entry = LogEntry(api=api_name, received_at=now, sdkappid=sdkappid, random=random)
        ext = ""
        request: SendRequest | PullRequest | StatsRequest | None = None
        try:
            try:
                api = Api(api_name)
            except ValueError:
                raise Refusal(1011, api_name) from None
            if body is None:
                raise Refusal(1004, f"body larger than {state.config.max_body_bytes} bytes")
            data = decode_body(body)
            given_ext = data.get("ext")
            ext = given_ext if isinstance(given_ext, str) else ""
            request = parse_request(api, data)
            if not random.isdigit():
                raise Refusal(1004, "random must be an unsigned number")
            entry.time = request.time
            answer = self._authenticated(api, sdkappid, random, request, now, entry)
        except Refusal as refusal:
            entry.result = refusal.code
            payload: dict[str, object] = {"result": refusal.code, "errmsg": refusal.errmsg}
            if api_name in (Api.SENDSMS, Api.SENDISMS, Api.SENDMULTISMS2):
                payload["ext"] = ext
            if isinstance(request, SendRequest) and request.api is Api.SENDISMS:
                payload["nationcode"] = request.phones[0].nationcode
            answer = Answer(payload=payload)
        state.record_request(entry)
        answer.latency = state.faults.latency_seconds(state.rng)
        return answer

    def _authenticated(
        self,
        api: Api,
        sdkappid: str,
        random: str,
        request: SendRequest | PullRequest | StatsRequest,
        now: float,
        entry: LogEntry,
    ) -> Answer:
        account = self.state.accounts.get(sdkappid)
        if isinstance(request, SendRequest):
            entry.numbers = tuple(phone.e164 for phone in request.phones)
        if account is None:
            raise Refusal(1019, sdkappid)
        if request.sig is None:
            raise Refusal(1003)
        if isinstance(request, SendRequest) and request.tel is not None:
            valid = sig_matches(request.sig, account.appkey, random, request.time, tel=request.tel)
        elif isinstance(request, SendRequest):
            mobiles = [phone.mobile for phone in request.phones]
            valid = sig_matches(request.sig, account.appkey, random, request.time, mobiles=mobiles)
        else:
            valid = sig_matches(request.sig, account.appkey, random, request.time)
        entry.sig_valid = valid
        if not valid:
            raise Refusal(1001)
        if abs(request.time - now) > MAX_CLOCK_SKEW_SECONDS:
            raise Refusal(1021, f"time {request.time} is {request.time - now:+.0f} s off")
        if isinstance(request, SendRequest):
            return self._send(account, request, now, entry)
        if isinstance(request, PullRequest):
            return self._pull(request, entry)
        figures = self.state.send_figures(account.sdkappid, request.begin_hour, request.end_hour)
        entry.result = 0
        data = {
            "request": figures.request,
            "success": figures.success,
            "bill_number": figures.bill_number,
        }
        return Answer(payload={"result": 0, "errmsg": OK, "data": data})

    def _pull(self, request: PullRequest, entry: LogEntry) -> Answer:
        if request.phone is None:
            data = self.reports.pull(request.type, request.max)
        else:
            entry.numbers = (request.phone.e164,)
            data = self.reports.pull_for(
                request.phone, request.begin_time, request.end_time, request.type, request.max
            )
        entry.result = 0
        return Answer(payload={"result": 0, "errmsg": "ok", "count": len(data), "data": data})

    def _send(self, account: Account, request: SendRequest, now: float, entry: LogEntry) -> Answer:
        state = self.state
        phones = request.phones
        if request.extend and not account.extend_allowed:
            raise Refusal(1006, "extend is not enabled for this sdkappid")

        # A number's script outranks the random faults; its result codes stay its own.
        scripted = [state.next_step(phone.mobile) for phone in phones] if state.scripts else []
        if any(scripted):
            whole = next((s for s in scripted if s is not None and s.kind not in PER_NUMBER), None)
            entry.fault = "scripted: " + ", ".join(s.label if s else "-" for s in scripted)
        else:
            whole = state.faults.draw(state.rng)
            entry.fault = f"random: {whole.label}" if whole else None
        if whole is not None and whole.kind in BEFORE_PROCESSING:
            if whole.kind is StepKind.HTTP:
                entry.http_status = int(whole.value)
                return Answer(status=int(whole.value))
            entry.http_status = None
            return Answer(after=whole)
        # From here the gateway has the request: it counts in `pullsendstatus`, per number.
        state.hour(account.sdkappid, now).request += len(phones)

        domestic = phones[0].domestic
        content = state.book.resolve(request, domestic=domestic)
        if request.api is Api.SENDMULTISMS2:
            if len(phones) > MAX_GROUP_SIZE:
                raise Refusal(1046, f"{len(phones)} numbers")
            if any(phone.domestic != domestic for phone in phones):
                raise Refusal(1034)
        else:
            check_phone(phones[0])
        check_region(content.template, domestic=domestic)
        text = content.rendered(domestic=domestic)
        check_length(text)
        check_marketing_hours(content.template, now)
        fee = segments(text, domestic=domestic)

        if whole is not None and whole.kind is StepKind.RESULT:
            # A random gateway-side failure hits the whole request, not one number.
            raise Refusal(int(whole.value))
        steps: Sequence[Step | None] = scripted or [None] * len(phones)
        group = request.api is Api.SENDMULTISMS2
        outcomes = [
            self._deliver(account, request, phone, step, text, fee, now, check=group)
            for phone, step in zip(phones, steps, strict=True)
        ]
        entry.outcomes = tuple(outcome for outcome, _ in outcomes)
        entry.result = 0 if group else outcomes[0][0].result
        after = whole if whole is not None and whole.kind in AFTER_PROCESSING else None
        if after is not None:
            entry.http_status = None if after.kind is StepKind.DROP_AFTER else 200
        if group:
            detail = [_detail(outcome, errmsg) for outcome, errmsg in outcomes]
            payload = {"result": 0, "errmsg": OK, "ext": request.ext, "detail": detail}
            return Answer(payload=payload, after=after)
        outcome, errmsg = outcomes[0]
        single: dict[str, object] = {"result": outcome.result, "errmsg": errmsg, "ext": request.ext}
        if outcome.result == 0:
            single.update(fee=outcome.fee, sid=outcome.sid)
        if request.api is Api.SENDISMS:
            single["nationcode"] = outcome.nationcode
        return Answer(payload=single, after=after)

    def _deliver(
        self,
        account: Account,
        request: SendRequest,
        phone: Phone,
        step: Step | None,
        text: str,
        fee: int,
        now: float,
        *,
        check: bool,
    ) -> tuple[NumberOutcome, str]:
        """One number of a send: its own refusal, or delivered to the inbox and billed."""
        try:
            if check:
                check_phone(phone)
            if step is not None and step.kind is StepKind.RESULT:
                raise Refusal(int(step.value))
            self.state.check_number_policy(phone, fee, now)
        except Refusal as refusal:
            return NumberOutcome(phone.nationcode, phone.mobile, refusal.code), refusal.errmsg
        sid = new_sid(self._yyyymmdd(now))
        delivered = InboxEntry(
            nationcode=phone.nationcode,
            mobile=phone.mobile,
            text=text,
            sid=sid,
            fee=fee,
            time=now,
            sdkappid=account.sdkappid,
            api=request.api,
        )
        self.state.record_delivery(delivered)
        self.reports.schedule(delivered)
        return NumberOutcome(phone.nationcode, phone.mobile, 0, sid, fee), OK

    def _yyyymmdd(self, now: float) -> str:
        day = (int(now) + 8 * 3600) // 86_400
        if self._day[0] != day:
            self._day = (day, datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d"))
        return self._day[1]


def _detail(outcome: NumberOutcome, errmsg: str) -> dict[str, object]:
    item: dict[str, object] = {
        "result": outcome.result,
        "errmsg": errmsg,
        "mobile": outcome.mobile,
        "nationcode": outcome.nationcode,
    }
    if outcome.result == 0:
        item.update(sid=outcome.sid, fee=outcome.fee)
    return item
