"""oauth_integration.auth.ModelBackend answers has_perm exactly as Django's ModelBackend does, in one query."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import AnonymousUser, Group, Permission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth_integration.auth import ModelBackend

PERMISSIONS = [
    "oauth_integration.view_oauthtoken",
    "oauth_integration.connect_customer",
    "oauth_integration.change_oauthtoken",
    "auth.view_user",
]
ASKED = [*PERMISSIONS, "oauth_integration.no_such_permission", "no_such_app.view_oauthtoken", "view_oauthtoken", ""]


def permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def answers(backend, user_id: int) -> list[bool]:
    """Every question asked of a user read afresh (no permission read before), as on a new request."""
    return [backend.has_perm(get_user_model().objects.get(pk=user_id), name) for name in ASKED]


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    active=st.booleans(),
    superuser=st.booleans(),
    staff=st.booleans(),
    own=st.sets(st.sampled_from(PERMISSIONS)),
    groups=st.lists(st.sets(st.sampled_from(PERMISSIONS)), max_size=3),
    in_groups=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_every_answer_is_djangos(active, superuser, staff, own, groups, in_groups):
    user = get_user_model().objects.create_user(
        f"user-{get_user_model().objects.count()}", is_active=active, is_superuser=superuser, is_staff=staff
    )
    user.user_permissions.set([permission(name) for name in own])
    for index, held in enumerate(groups):
        group = Group.objects.create(name=f"group-{Group.objects.count()}")
        group.permissions.set([permission(name) for name in held])
        if in_groups[index]:
            user.groups.add(group)
    # A group the user is not in, holding everything: nothing must leak from it.
    bystanders = Group.objects.create(name=f"bystanders-{Group.objects.count()}")
    bystanders.permissions.set([permission(name) for name in PERMISSIONS])

    assert answers(ModelBackend(), user.pk) == answers(DjangoModelBackend(), user.pk)


@pytest.mark.django_db
def test_anonymous_users_and_object_permissions_are_refused_as_django_refuses_them():
    user = get_user_model().objects.create_user("holder")
    user.user_permissions.add(permission("oauth_integration.view_oauthtoken"))
    for backend in (ModelBackend(), DjangoModelBackend()):
        assert backend.has_perm(AnonymousUser(), "oauth_integration.view_oauthtoken") is False
        fresh = get_user_model().objects.get(pk=user.pk)
        assert backend.has_perm(fresh, "oauth_integration.view_oauthtoken", obj=object()) is False
        assert backend.has_perm(fresh, "oauth_integration.view_oauthtoken") is True


@pytest.mark.django_db
def test_one_permission_is_one_query_and_a_request_that_read_them_all_asks_none(django_assert_num_queries):
    user = get_user_model().objects.create_user("counted")
    group = Group.objects.create(name="readers")
    group.permissions.add(permission("oauth_integration.view_oauthtoken"))
    user.groups.add(group)
    user = get_user_model().objects.get(pk=user.pk)
    backend = ModelBackend()

    with django_assert_num_queries(1):
        assert backend.has_perm(user, "oauth_integration.view_oauthtoken") is True
    backend.get_all_permissions(user)  # what the admin reads
    with django_assert_num_queries(0):
        assert backend.has_perm(user, "oauth_integration.view_oauthtoken") is True
        assert backend.has_perm(user, "oauth_integration.connect_customer") is False


@pytest.mark.django_db
def test_a_permission_taken_away_is_seen_by_the_next_check():
    user = get_user_model().objects.create_user("revoked")
    user.user_permissions.add(permission("oauth_integration.view_oauthtoken"))
    assert ModelBackend().has_perm(get_user_model().objects.get(pk=user.pk), "oauth_integration.view_oauthtoken")
    get_user_model().user_permissions.through.objects.filter(user_id=user.pk).delete()  # no signal
    assert not ModelBackend().has_perm(get_user_model().objects.get(pk=user.pk), "oauth_integration.view_oauthtoken")


def fields_of(user) -> dict:
    return {field.attname: getattr(user, field.attname) for field in user._meta.concrete_fields}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"is_active": False},
        {"is_superuser": True, "is_staff": True},
        {"first_name": "Zoë", "email": "zoe@example.com", "last_login": "2026-12-01T10:00:00+00:00"},
    ],
)
def test_get_user_reads_the_user_as_django_does(attributes, django_assert_num_queries):
    user = get_user_model().objects.create_user("read-back", password="a long password", **attributes)
    mine, djangos = ModelBackend(), DjangoModelBackend()

    with django_assert_num_queries(1):
        found = mine.get_user(user.pk)
    expected = djangos.get_user(user.pk)

    if expected is None:  # an inactive user is nobody, for both
        assert found is None
    else:
        assert type(found) is type(expected)
        assert fields_of(found) == fields_of(expected)
        assert found._state.db == expected._state.db and found._state.adding is False
    assert mine.get_user(user.pk + 1000) is None is djangos.get_user(user.pk + 1000)
