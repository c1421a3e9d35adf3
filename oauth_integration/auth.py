"""An authentication backend that keeps users and their permissions in the shared cache.

Django's ``ModelBackend`` reads the user, then its permissions and its groups'
permissions, from the database on every request: three round trips before a view such as
``/profiles`` does its own work. ``CachedModelBackend`` keeps the user, with the
permissions already computed on it, in Django's default cache, and drops it the moment
anything that decides access changes: the user row (password, ``is_active``,
``is_staff``, ``is_superuser``), its groups or permissions, or any group's permissions.
Logging out stays immediate: it deletes the session, and a cached user is only ever
reached through a session.

Use it only with a cache every server shares (Redis, Memcached, or on a single machine a
file-based cache): a per-process cache cannot see changes made in other processes. The
cache then holds user rows (including password hashes), as the database does: protect
it as you protect the database.

Entries are versioned: a change bumps the user's version (or, for group and permission
changes, a global one) instead of deleting, and each entry records the versions it was
filled under; a request that read the database just before a change can only ever write
an entry that no longer matches. Versions start at a random number, and an entry counts
only while both of its versions are in the cache: one evicted or cleared away is started
afresh, so no earlier entry can match it again.

Each process also keeps the users it read last, under the same versions: while they still
match, a request reads the two versions from the cache and not the user (unpickling a user
with its permissions cost more than the rest of finding who is logged in). Each request
gets its own copy.
"""

from __future__ import annotations

import copy
import functools
import secrets
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils.module_loading import import_string

PREFIX = "oauth_integration:auth"
GENERATION = f"{PREFIX}:generation"
TIMEOUT = 600  # seconds a cached user lives without being invalidated
RECENT_USERS = 1000  # users each process keeps at most (it forgets them all when full)


def _version_key(user_id: Any) -> str:
    return f"{PREFIX}:version:{user_id}"


def _user_key(user_id: Any) -> str:
    return f"{PREFIX}:user:{user_id}"


_recent: dict[Any, tuple[tuple[int, int], Any, float]] = {}  # user id -> (versions, user, expires)
_recent_lock = threading.Lock()


class CachedModelBackend(ModelBackend):
    """``ModelBackend`` whose ``get_user`` answers from the shared cache (permissions included)."""

    def get_user(self, user_id: Any) -> Any:
        version_key, key = _version_key(user_id), _user_key(user_id)
        recent = _recent.get(user_id)
        # With a copy in this process, the versions decide whether the shared entry is needed.
        found = cache.get_many([GENERATION, version_key] if recent else [GENERATION, version_key, key])
        versions = _versions(found, version_key)
        if recent is not None:
            if versions == recent[0] and time.monotonic() < recent[2]:
                return copy.copy(recent[1])
            if versions is not None:
                found[key] = cache.get(key)
        entry = found.get(key)
        if versions is not None and entry is not None and entry[0] == versions:
            user = entry[1]
        else:
            if versions is None:
                versions = _start_versions(version_key)
            user = super().get_user(user_id)
            if user is None:
                return None
            self.get_all_permissions(user)  # computed once, cached on the instance with it
            cache.set(key, (versions, user), TIMEOUT)
        _remember(user_id, versions, user)
        return copy.copy(user)


def _versions(found: dict[str, Any], version_key: str) -> tuple[int, int] | None:
    """The (global, user) versions read, or None when either is missing (never set, evicted, cleared)."""
    generation, version = found.get(GENERATION), found.get(version_key)
    return None if generation is None or version is None else (generation, version)


def _start_versions(version_key: str) -> tuple[int, int] | None:
    """Start the missing versions at random numbers (another process may just have), and read them."""
    cache.add(GENERATION, _random_start(), None)
    cache.add(version_key, _random_start(), None)
    return _versions(cache.get_many([GENERATION, version_key]), version_key)


def _random_start() -> int:
    return secrets.randbits(62)


def _remember(user_id: Any, versions: tuple[int, int] | None, user: Any) -> None:
    if versions is None:  # the cache keeps nothing (a dummy cache): neither does this process
        return
    with _recent_lock:
        if len(_recent) >= RECENT_USERS:
            _recent.clear()
        _recent[user_id] = (versions, user, time.monotonic() + TIMEOUT)


def _bump(key: str) -> None:
    cache.add(key, _random_start(), None)
    try:
        cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, _random_start(), None)


def forget_user(user_id: Any) -> None:
    """Make every cached copy of this user unreachable."""
    _bump(_version_key(user_id))


def forget_everyone() -> None:
    """Make every cached user unreachable (a group's or a permission's meaning changed)."""
    _bump(GENERATION)


@functools.lru_cache(maxsize=4)
def _caching(backends: tuple[str, ...]) -> bool:
    return any(issubclass(import_string(path), CachedModelBackend) for path in backends)


def in_use() -> bool:
    """Whether a configured authentication backend is (or extends) ``CachedModelBackend``."""
    return _caching(tuple(settings.AUTHENTICATION_BACKENDS))


def _user_changed(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if in_use():
        forget_user(instance.pk)


def _memberships_changed(sender: Any, instance: Model, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
    if not action.startswith("post_") or not in_use():
        return
    if reverse:  # group.user_set or permission.user_set changed: those users
        for user_id in pk_set or ():
            forget_user(user_id)
        if action == "post_clear":
            forget_everyone()
    else:
        forget_user(instance.pk)


def _groups_changed(sender: Any, **kwargs: Any) -> None:
    if in_use():
        forget_everyone()


def connect_invalidation() -> None:
    """Connect the receivers that keep the cache truthful (done once, when the app is ready).

    They are always connected and act only while the backend is in use, so that settings
    changed after start-up (a subclass, tests) are covered and a site without it never
    touches the cache when a user is saved."""
    user_model = get_user_model()
    post_save.connect(_user_changed, sender=user_model, dispatch_uid="oauth_integration.auth.user_saved")
    post_delete.connect(_user_changed, sender=user_model, dispatch_uid="oauth_integration.auth.user_deleted")
    for name in ("groups", "user_permissions"):  # a custom user model may have neither
        if relation := getattr(getattr(user_model, name, None), "through", None):
            m2m_changed.connect(_memberships_changed, sender=relation, dispatch_uid=f"oauth_integration.auth.{name}")
    m2m_changed.connect(_groups_changed, sender=Group.permissions.through, dispatch_uid="oauth_integration.auth.group")
    for model in (Group, Permission):
        post_save.connect(_groups_changed, sender=model, dispatch_uid=f"oauth_integration.auth.{model}.saved")
        post_delete.connect(_groups_changed, sender=model, dispatch_uid=f"oauth_integration.auth.{model}.deleted")
