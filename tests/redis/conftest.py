"""Fixtures of the redis_admin tests: a real redis-server with TLS on a loopback port (redis_under_test.py)."""
import os

import pytest

from redis_under_test import REDIS_SERVER, RedisUnderTest


@pytest.fixture()
def redis_tls(tmp_path):
    if not os.path.exists(REDIS_SERVER):
        pytest.fail('redis-server is not installed (apt-get install redis-server redis-tools)')
    server = RedisUnderTest(tmp_path)
    yield server
    server.stop()


@pytest.fixture()
def redis_legacy(tmp_path):
    """A Redis from before per-host users: plaintext port open and the shared requirepass."""
    server = RedisUnderTest(tmp_path, plain=True, legacy=True)
    yield server
    server.stop()
