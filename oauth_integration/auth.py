"""Django's ``ModelBackend``, asking the database one question per permission check.

Django's ``ModelBackend.has_perm`` reads every permission the user holds, through the user
and through each group (two queries), to answer whether one is among them. A view such as
``/profiles`` asks for one permission, once: ``ModelBackend`` here answers that with one
query (``EXISTS``: the permission, held by the user or by one of the user's groups), read
from the database on every request exactly as Django's is. Nothing is cached across
requests; within one request, once Django's backend has read all of a user's permissions
(the admin does), the answer comes from that set, as Django's would.

Everything else (authentication, ``get_user``, ``get_all_permissions``, module permissions,
the async methods) is Django's own. ``tests/test_auth_backend.py`` checks that both backends
give the same answer for users that are active or not, superusers, staff, with permissions
of their own and through groups, for permissions that exist and that do not.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q


class ModelBackend(DjangoModelBackend):
    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return False
        if hasattr(user_obj, "_perm_cache"):  # all of them already read in this request
            return perm in user_obj._perm_cache
        app_label, dot, codename = perm.partition(".")
        if not dot:
            return False
        permissions = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        if not user_obj.is_superuser:  # a superuser holds every permission that exists
            through_user, through_group = _holders()
            permissions = permissions.filter(Q(**{through_user: user_obj}) | Q(**{through_group: user_obj}))
        return permissions.exists()


@functools.cache
def _holders() -> tuple[str, str]:
    """The lookups from a permission to a user holding it directly, and through a group
    (``user`` and ``group__user`` for Django's own user model), as ModelBackend finds them."""
    fields = get_user_model()._meta
    return (
        fields.get_field("user_permissions").related_query_name(),
        f"group__{fields.get_field('groups').related_query_name()}",
    )
