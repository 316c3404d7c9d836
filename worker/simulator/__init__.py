"""A gateway simulator for Tencent Cloud's v5 SMS API: a real HTTP server for demos, staging and CI.

It checks signatures and content the way the gateway does, bills segments the way the gateway
does, keeps a handset inbox and a request log, sends delivery reports, and injects the gateway's
faults on demand (see ``control_api`` for the control endpoints and the meaning of each fault).
"""

from worker.simulator.app import SimulatorApp, create_app
from worker.simulator.config import ConfigError, SimulatorConfig, default_config, load_config
from worker.simulator.control import (
    InboxMessage,
    RequestRecord,
    SimulatorControl,
    SimulatorControlError,
)
from worker.simulator.server import SimulatorServer, run_forever

__all__ = [
    "ConfigError",
    "InboxMessage",
    "RequestRecord",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorControlError",
    "SimulatorServer",
    "create_app",
    "default_config",
    "load_config",
    "run_forever",
]
