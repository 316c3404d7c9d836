"""sms-worker: a delivery worker for Tencent Cloud's v5 SMS API."""

__version__ = "0.1.0"
