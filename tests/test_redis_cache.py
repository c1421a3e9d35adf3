"""The example site's Redis cache backend against a real Redis server (REDIS_URL, default
redis://127.0.0.1:6379/15): Django's backend, with one client object per connection pool.

Without a Redis server the tests are skipped, unless REQUIRE_REDIS_TESTS=1 (set by CI),
which turns the missing server into a failure.
"""

import os
import threading
import uuid

import pytest
import redis

from klaviyo_site.redis_cache import RedisCache
from tests.test_checks import _settings_of

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_cache():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("REQUIRE_REDIS_TESTS") == "1":
            pytest.fail(
                f"no Redis at {REDIS_URL}, and REQUIRE_REDIS_TESTS=1 requires these tests to run", pytrace=False
            )
        pytest.skip(f"no Redis at {REDIS_URL}")
    cache = RedisCache(REDIS_URL, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    yield cache
    cache.delete_many(["a", "b", "counter", "added"])


def test_a_redis_cache_url_selects_the_sites_backend():
    printed = _settings_of(
        "settings.CACHES['default']['BACKEND']",
        DEBUG="true",
        DATABASE_URL="postgres://user@db.example:5432/app",
        CACHE_URL="redis://127.0.0.1:6379/0",
    )
    assert printed == "'klaviyo_site.redis_cache.RedisCache'"


def test_every_operation_shares_one_client_per_pool(redis_cache):
    client = redis_cache._cache.get_client()
    assert redis_cache._cache.get_client("a", write=True) is client
    redis_cache.set("a", {"user": 1})
    redis_cache.set("b", 2)
    assert redis_cache._cache.get_client() is client
    assert redis_cache.get_many(["a", "b", "missing"]) == {"a": {"user": 1}, "b": 2}


def test_the_backend_behaves_as_djangos(redis_cache):
    assert redis_cache.add("added", 1, None)
    assert not redis_cache.add("added", 2, None)
    assert redis_cache.get("added") == 1
    assert redis_cache.incr("added") == 2
    redis_cache.delete("added")
    assert redis_cache.get("added", "gone") == "gone"
    with pytest.raises(ValueError, match="not found"):
        redis_cache.incr("added")


def test_threads_share_the_client_safely(redis_cache):
    redis_cache.set("counter", 0, None)

    def bump():
        for _ in range(200):
            redis_cache.incr("counter")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis_cache.get("counter") == 1600
