"""Django's Redis cache backend, with one client object per connection pool.

Django's ``RedisCacheClient`` builds a new ``redis.Redis`` for every cache operation.
Building one copies redis-py's table of about 170 response callbacks into a fresh
case-insensitive dictionary: with redis-py 8 that cost more CPU than the round trip to
Redis itself, twice per request (the session, then the user). A ``redis.Redis`` is safe to
share between threads (each command takes a connection from the pool), so one is kept per
pool. Everything else is Django's backend unchanged.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # id of a pool (Django keeps each for good) -> its client

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(django_redis.RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with the client above."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
