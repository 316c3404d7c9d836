"""The simulator's built-in account, signs and templates: enough for a demo with no config file.

Plain data, read by ``config.py``. The account and template 19 are the ones of Tencent's own
documentation, so examples copied from the docs work against the simulator unchanged.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SDKAPPID = "1400000000"
# The example key printed in Tencent's documentation; it protects nothing.
DOCUMENTED_EXAMPLE_APPKEY = "5f03a35d00ee52a21327ab048186a2c4"

DEFAULTS: dict[str, Any] = {
    "accounts": [
        {"sdkappid": DEFAULT_SDKAPPID, "appkey": DOCUMENTED_EXAMPLE_APPKEY},
    ],
    "signs": [
        {"text": "腾讯云", "approved": True},
        # Still under review: sending with it answers 1012.
        {"text": "测试签名", "approved": False},
    ],
    "templates": [
        {
            # The documented example; params ["验证码", "1234", "4"].
            "id": 19,
            "kind": "notification",
            "text": "{1}为{2}，请于{3}分钟内填写。如非本人操作，请忽略本短信。",
        },
        {
            # Params ["123456", "5"]; each variable must be 0-6 digits.
            "id": 100001,
            "kind": "verification",
            "text": "您的验证码是{1}，{2}分钟内有效，请勿泄露。",
        },
        {
            # Params ["张女士", "8"]; only between 08:00 and 22:00 Beijing time.
            "id": 100002,
            "kind": "marketing",
            "text": "亲爱的{1}，您的会员积分即将到期，本周末全场{2}折，欢迎选购。拒收请回复R",
        },
        {
            # Params ["张先生", "20240501001", "5月1日", "顺丰速运", "SF1234567890"]:
            # 102 characters with the sign, so 2 billed segments.
            "id": 100003,
            "kind": "notification",
            "text": (
                "尊敬的{1}，您的订单{2}已于{3}发货，承运商为{4}，运单号为{5}。"
                "预计两到三个工作日内送达，请保持手机畅通。如有疑问请联系在线客服，感谢您的支持。"
            ),
        },
        {
            # Params ["123456", "5"], to a number outside mainland China.
            "id": 100004,
            "kind": "verification",
            "international": True,
            "text": "Your verification code is {1}, valid for {2} minutes.",
        },
        {
            # Still under review: using it answers 1014.
            "id": 100099,
            "kind": "notification",
            "approved": False,
            "text": "您的账户{1}已开通。",
        },
    ],
}
