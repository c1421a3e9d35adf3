"""Who is logged in, and with which permissions, is what the database says at the time of the request.

Whatever authentication backend and session engine the site is configured with, and whatever
cache it shares between servers: a change that decides access takes effect on the next request
after it commits, also when a request by the same user was being served while the change's
transaction was open, and also for writes that send no signal (``QuerySet.update()``, rows of a
many-to-many table deleted directly).

Each change runs inside ``transaction.atomic()`` (as the admin's change and delete views do)
while another thread, with a database connection of its own, serves a request by the user; then
the change commits and the user's next request is answered.

Status codes of ``GET /profiles/nobody``: 404 means access was granted (no such customer is
connected), 403 that the permission is missing, 401 that nobody is logged in.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.test import Client, override_settings

from tests.conftest import grant_permissions

pytestmark = pytest.mark.django_db(transaction=True)

VIEW = "view_oauthtoken"
GRANTED, FORBIDDEN, LOGGED_OUT = 404, 403, 401
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_cache() -> dict[str, Any]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("REQUIRE_REDIS_TESTS") == "1":
            pytest.fail(f"no Redis at {REDIS_URL}, and REQUIRE_REDIS_TESTS=1", pytrace=False)
        pytest.skip(f"no Redis at {REDIS_URL}")
    return {"BACKEND": "klaviyo_site.redis_cache.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": uuid.uuid4().hex}


@pytest.fixture(params=["locmem", "file", "redis"])
def site_cache(request, tmp_path):
    """The site's default cache: this process's memory, a file cache (SQLite's default), or Redis."""
    config = {
        "locmem": lambda: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex},
        "file": lambda: {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": tmp_path},
        "redis": _redis_cache,
    }[request.param]()
    with override_settings(CACHES={"default": config}):
        yield request.param


def _status(client: Client) -> int:
    return client.get("/profiles/nobody").status_code


def _status_from_another_thread(client: Client) -> int:
    """A request served by another thread (its own database connection), as a second worker would."""
    answers: list[int | BaseException] = []

    def serve() -> None:
        try:
            answers.append(_status(client))
        except BaseException as exc:  # noqa: BLE001  (reported by the caller)
            answers.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(timeout=30)
    assert answers, "the concurrent request did not finish"
    if isinstance(answers[0], BaseException):
        raise answers[0]
    return answers[0]


def _viewer(username: str = "viewer", **fields: Any) -> Any:
    user = get_user_model().objects.create_user(username, password="old-password-1", is_staff=True, **fields)
    return grant_permissions(user, VIEW)


def _logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _change_while_a_request_is_served(client: Client, change: Callable[[], object]) -> int:
    """Run ``change`` in a transaction during which the user's session makes a request; then commit.

    Returns what that request got: the database did not yet say otherwise, so access was granted."""
    assert _status(client) == GRANTED  # read once before: anything cached is from before the change
    with transaction.atomic():
        change()
        during = _status_from_another_thread(client)
    return during


def _deactivate(user: Any) -> Callable[[], None]:
    def change() -> None:
        user.is_active = False
        user.save()

    return change


def _change_password(user: Any) -> Callable[[], None]:
    def change() -> None:
        user.set_password("new-password-2")
        user.save()

    return change


def _remove_permission(user: Any) -> Callable[[], None]:
    return lambda: user.user_permissions.remove(Permission.objects.get(codename=VIEW))


def _update_inactive(user: Any) -> Callable[[], None]:
    return lambda: get_user_model().objects.filter(pk=user.pk).update(is_active=False)


def _delete_through_rows(user: Any) -> Callable[[], None]:
    through = get_user_model().user_permissions.through
    return lambda: through.objects.filter(user_id=user.pk).delete()


def _delete(user: Any) -> Callable[[], None]:
    return lambda: user.delete()


@pytest.mark.parametrize(
    ("change", "refused_with"),
    [
        (_deactivate, LOGGED_OUT),
        (_change_password, LOGGED_OUT),
        (_remove_permission, FORBIDDEN),
        (_update_inactive, LOGGED_OUT),
        (_delete_through_rows, FORBIDDEN),
        (_delete, LOGGED_OUT),
    ],
    ids=["deactivated", "password-changed", "permission-removed", "update-inactive", "through-rows-deleted", "deleted"],
)
def test_a_change_committed_while_the_user_was_making_a_request_applies_to_the_next_one(
    site_cache, change, refused_with
):
    user = _viewer()
    client = _logged_in(user)
    assert _change_while_a_request_is_served(client, change(user)) == GRANTED
    assert _status(client) == refused_with


def test_a_deleted_superuser_is_refused_after_the_commit(site_cache):
    superuser = get_user_model().objects.create_superuser("root", password="old-password-1")
    client = _logged_in(superuser)
    assert client.get("/admin/auth/user/add/").status_code == 200
    assert _change_while_a_request_is_served(client, superuser.delete) == GRANTED
    assert _status(client) == LOGGED_OUT
    assert client.get("/admin/auth/user/add/").status_code == 302  # to the login page


def test_a_permission_taken_from_the_users_group_is_refused_after_the_commit(site_cache):
    group = Group.objects.create(name="support")
    group.permissions.add(Permission.objects.get(codename=VIEW))
    user = get_user_model().objects.create_user("agent", is_staff=True)
    user.groups.add(group)
    client = _logged_in(user)
    assert _change_while_a_request_is_served(client, group.permissions.clear) == GRANTED
    assert _status(client) == FORBIDDEN


def test_writes_that_send_no_signal_apply_to_the_next_request(site_cache):
    user = _viewer()
    client = _logged_in(user)
    assert _status(client) == GRANTED
    get_user_model().user_permissions.through.objects.filter(user_id=user.pk).delete()
    assert _status(client) == FORBIDDEN
    grant_permissions(user, VIEW)
    assert _status(client) == GRANTED
    get_user_model().objects.filter(pk=user.pk).update(is_superuser=False, is_active=False)
    assert _status(client) == LOGGED_OUT


def test_a_permission_granted_applies_to_the_next_request(site_cache):
    user = get_user_model().objects.create_user("newcomer", is_staff=True)
    client = _logged_in(user)
    assert _status(client) == FORBIDDEN
    grant_permissions(user, VIEW)
    assert _status(client) == GRANTED
