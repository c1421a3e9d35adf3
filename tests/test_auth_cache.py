"""Users and their permissions from the shared cache: no queries once cached, and every change that
decides access (logout, permissions, groups, deactivation, password) takes effect at once."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.test import Client

from oauth_integration.auth import CachedModelBackend, forget_user
from tests.conftest import PROFILES_URL, grant_permissions, profiles_body

pytestmark = pytest.mark.django_db
VIEW = "view_oauthtoken"


class SiteBackend(CachedModelBackend):
    """A host project's own backend built on the cached one."""


@pytest.fixture(autouse=True, params=["oauth_integration.auth.CachedModelBackend", f"{__name__}.SiteBackend"])
def _cached_backend(settings, request):
    settings.AUTHENTICATION_BACKENDS = [request.param]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"


@pytest.fixture
def reader(make_connection):
    make_connection("cust-1")
    user = grant_permissions(get_user_model().objects.create_user("reader", password="pw-1", is_staff=True), VIEW)
    client = Client()
    client.force_login(user)
    return user, client


def status(client, mocked_responses):
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    answer = client.get("/profiles/cust-1").status_code
    if answer != 200:
        mocked_responses.remove("GET", PROFILES_URL)  # not called: access was refused first
    return answer


def test_once_cached_a_request_reads_no_session_user_or_permission_from_the_database(
    reader, mocked_responses, django_assert_num_queries
):
    _, client = reader
    assert status(client, mocked_responses) == 200
    with django_assert_num_queries(1):  # the connection, nothing else
        assert status(client, mocked_responses) == 200


def test_removing_a_permission_takes_effect_on_the_next_request(reader, mocked_responses):
    user, client = reader
    assert status(client, mocked_responses) == 200
    user.user_permissions.remove(Permission.objects.get(codename=VIEW))
    assert status(client, mocked_responses) == 403


def test_group_permissions_and_membership_changes_take_effect_at_once(make_connection, mocked_responses):
    make_connection("cust-1")
    group = Group.objects.create(name="support")
    group.permissions.add(Permission.objects.get(codename=VIEW))
    user = get_user_model().objects.create_user("agent", is_staff=True)
    user.groups.add(group)
    client = Client()
    client.force_login(user)
    assert status(client, mocked_responses) == 200
    group.permissions.clear()
    assert status(client, mocked_responses) == 403
    group.permissions.add(Permission.objects.get(codename=VIEW))
    assert status(client, mocked_responses) == 200
    group.user_set.remove(user)
    assert status(client, mocked_responses) == 403


def test_deactivating_the_user_or_changing_its_password_logs_it_out(reader, mocked_responses):
    user, client = reader
    assert status(client, mocked_responses) == 200
    user.is_active = False
    user.save()
    assert status(client, mocked_responses) == 401
    user.is_active = True
    user.save()
    client.force_login(user)
    assert status(client, mocked_responses) == 200
    user.set_password("pw-2")
    user.save()
    assert status(client, mocked_responses) == 401


def test_logging_out_ends_every_copy_of_the_session(reader, mocked_responses):
    _, client = reader
    copy = Client()
    copy.cookies = client.cookies  # the same session cookie, as a second tab or a stolen cookie
    assert status(copy, mocked_responses) == 200
    client.post("/admin/logout/")
    assert status(copy, mocked_responses) == 401


def test_an_entry_filled_before_a_change_is_never_used(reader):
    user, _ = reader
    backend = CachedModelBackend()
    stale = backend.get_user(user.pk)  # cached, with the view permission
    assert stale.has_perm(f"oauth_integration.{VIEW}")
    user.user_permissions.clear()  # bumps the user's version
    # A request that read the database just before the change writes its (old) entry back late:
    cache.set(f"oauth_integration:auth:user:{user.pk}", ((0, 0), stale), 600)
    fresh = backend.get_user(user.pk)
    assert not fresh.has_perm(f"oauth_integration.{VIEW}")
    forget_user(user.pk)
    assert not backend.get_user(user.pk).has_perm(f"oauth_integration.{VIEW}")


def test_without_the_backend_saving_a_user_leaves_the_cache_alone(settings):
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    user = get_user_model().objects.create_user("plain")
    user.is_active = False
    user.save()
    user.user_permissions.add(Permission.objects.get(codename=VIEW))
    Group.objects.create(name="support")
    assert cache.get_many([f"oauth_integration:auth:version:{user.pk}", "oauth_integration:auth:generation"]) == {}


def test_an_evicted_version_never_brings_back_an_entry_filled_before_the_change(reader):
    user, _ = reader
    backend = CachedModelBackend()
    cache.clear()  # the user is read into a cache that holds no version for it yet
    assert backend.get_user(user.pk).has_perm(f"oauth_integration.{VIEW}")  # cached
    user.user_permissions.clear()  # bumps the user's version ...
    cache.delete(f"oauth_integration:auth:version:{user.pk}")  # ... which the cache then evicts
    assert not backend.get_user(user.pk).has_perm(f"oauth_integration.{VIEW}")


def test_a_cleared_cache_is_not_outlived_by_the_users_a_process_keeps(reader):
    user, _ = reader
    backend = CachedModelBackend()
    assert backend.get_user(user.pk).is_staff
    cache.clear()
    get_user_model().objects.filter(pk=user.pk).update(is_staff=False)  # no signal: only a re-read sees it
    assert not backend.get_user(user.pk).is_staff


def test_a_user_read_again_comes_from_this_process_as_a_copy_of_its_own(reader):
    user, _ = reader
    backend = CachedModelBackend()
    first = backend.get_user(user.pk)
    first.first_name = "changed by one request"
    # The shared entry is not read again while the versions match: even a broken one is not seen.
    versions, _ = cache.get(f"oauth_integration:auth:user:{user.pk}")
    cache.set(f"oauth_integration:auth:user:{user.pk}", (versions, None), 600)
    again = backend.get_user(user.pk)
    assert again is not first
    assert again.pk == user.pk
    assert again.first_name == ""
    assert again.has_perm(f"oauth_integration.{VIEW}")
    forget_user(user.pk)  # a change: the process's copy no longer counts
    assert backend.get_user(user.pk).first_name == ""
