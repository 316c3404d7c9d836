"""Tencent Cloud SMS v5 protocol: signing, validation, wire shapes, result classes, HTTP client.

Usable on its own::

    with SmsClient(sdkappid, appkey) as client:
        exchange = client.send(parse_phone("+8613788888888"), Template(1234, ("5678",)))
        if exchange.outcome is Outcome.OK: ...
"""

from worker.tencent.client import Exchange, GatewayError, SignedRequest, SmsClient
from worker.tencent.codes import (
    RESULT_CODES,
    CodeInfo,
    Outcome,
    Wait,
    classify_http_status,
    classify_result,
    code_info,
)
from worker.tencent.numbers import parse_phone
from worker.tencent.rules import (
    MAX_TEMPLATE_PARAMS,
    InvalidInput,
    check_group,
    check_length,
    check_param_count,
    check_params,
    check_signed_text,
    render_template,
    sign_text,
)
from worker.tencent.segments import count_segments, message_length, render
from worker.tencent.signing import sign
from worker.tencent.transport import (
    AmbiguousError,
    HttpAnswer,
    HttpTransport,
    NetworkError,
    TransportError,
)
from worker.tencent.types import (
    DEFAULT_GATEWAY_URL,
    Api,
    Content,
    DeliveryReport,
    GroupSendResult,
    Phone,
    PullResult,
    Reply,
    SendResult,
    SendStats,
    Template,
    Text,
)
from worker.tencent.wire import MalformedResponse

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "MAX_TEMPLATE_PARAMS",
    "RESULT_CODES",
    "AmbiguousError",
    "Api",
    "CodeInfo",
    "Content",
    "DeliveryReport",
    "Exchange",
    "GatewayError",
    "GroupSendResult",
    "HttpAnswer",
    "HttpTransport",
    "InvalidInput",
    "MalformedResponse",
    "NetworkError",
    "Outcome",
    "Phone",
    "PullResult",
    "Reply",
    "SendResult",
    "SendStats",
    "SignedRequest",
    "SmsClient",
    "Template",
    "Text",
    "TransportError",
    "Wait",
    "check_group",
    "check_length",
    "check_param_count",
    "check_params",
    "check_signed_text",
    "classify_http_status",
    "classify_result",
    "code_info",
    "count_segments",
    "message_length",
    "parse_phone",
    "render",
    "render_template",
    "sign",
    "sign_text",
]
