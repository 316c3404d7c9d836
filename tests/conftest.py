"""Shared fixtures live in tests/fixtures/, one module per real part the tests talk to."""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.redis",
    "tests.fixtures.simulator",
    "tests.fixtures.pipeline",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.receiver",
    "tests.fixtures.batches",
    "tests.fixtures.clock",
]
