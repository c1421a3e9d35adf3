"""Django's ``ModelBackend``, reading who is logged in and what they may do with two statements.

Every request that needs a permission reads, from the database, the logged-in user and then
whether they hold it: nothing is cached across requests, so a deactivation, a password
change, a deleted user or a permission taken away applies to the next request once
committed, however it was written (the admin, ``QuerySet.update()``, raw SQL). Django's
``ModelBackend`` does the same with more work: its ``has_perm`` reads every permission the
user holds, through the user and through each group (two queries), to answer whether one is
among them, and the ORM builds each query's SQL afresh on every request, which costs more
CPU than running it. Here:

* ``get_user``: the user row by primary key, with a statement written once per database and
  its values converted by the ORM's own converters (``models.rows.one_row``, which also reads
  a connection for every call to Klaviyo), then Django's ``user_can_authenticate``.
* ``has_perm``: one ``EXISTS`` statement, written once per database: the permission, held by
  the user directly or through one of their groups (any permission that exists, for a
  superuser). Within one request, once Django's backend has read all of a user's
  permissions (the admin does), the answer comes from that set, as Django's would.

Only Django's own ``auth.User`` takes these statements (a custom user model, whose manager or
tables may differ, gets Django's methods unchanged). Everything else (authentication,
``get_all_permissions``, module permissions, the async methods) is Django's.
``tests/test_auth_backend.py`` checks that both backends give the same answers, on SQLite and
PostgreSQL, for users active or not, superusers, staff, with permissions of their own and
through groups, for permissions that exist and that do not.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router

from oauth_integration.models.rows import one_row


class ModelBackend(DjangoModelBackend):
    def get_user(self, user_id: Any) -> Any:
        user_model = get_user_model()
        if user_model is not User:
            return super().get_user(user_id)
        alias = router.db_for_read(User)
        key = User._meta.pk
        user = one_row(User, key.column, key.get_db_prep_value(user_id, connections[alias]), alias)
        if user is None:
            return None
        return user if self.user_can_authenticate(user) else None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return False
        if hasattr(user_obj, "_perm_cache"):  # all of them already read in this request
            return perm in user_obj._perm_cache
        if type(user_obj) is not User:
            return super().has_perm(user_obj, perm, obj=obj)
        app_label, dot, codename = perm.partition(".")
        if not dot:
            return False
        alias = router.db_for_read(Permission)
        held, exists = _permission_statements(alias)
        with connections[alias].cursor() as cursor:
            if user_obj.is_superuser:  # every permission that exists
                cursor.execute(exists, [app_label, codename])
            else:
                cursor.execute(held, [app_label, codename, user_obj.pk, user_obj.pk])
            return cursor.fetchone() is not None


@functools.cache
def _permission_statements(alias: str) -> tuple[str, str]:
    """Two statements with the app label and codename as parameters: whether a user (twice:
    directly, through groups) holds that permission, and whether it exists at all."""
    quote = connections[alias].ops.quote_name
    permission, content_type = Permission._meta, ContentType._meta
    direct = User._meta.get_field("user_permissions")
    membership = User._meta.get_field("groups")
    granted = Group._meta.get_field("permissions")
    p_id = f"p.{quote(permission.pk.column)}"
    exists = (
        f"SELECT 1 FROM {quote(permission.db_table)} p"  # noqa: S608 (names from the models, values as parameters)
        f" INNER JOIN {quote(content_type.db_table)} c"
        f" ON p.{quote(permission.get_field('content_type').column)} = c.{quote(content_type.pk.column)}"
        f" WHERE c.{quote('app_label')} = %s AND p.{quote('codename')} = %s"
    )
    held = (
        f"{exists} AND ("  # noqa: S608 (names from the models, values as parameters)
        f"EXISTS (SELECT 1 FROM {quote(direct.m2m_db_table())} up"
        f" WHERE up.{quote(direct.m2m_column_name())} = %s AND up.{quote(direct.m2m_reverse_name())} = {p_id})"
        f" OR EXISTS (SELECT 1 FROM {quote(membership.m2m_db_table())} ug"
        f" INNER JOIN {quote(granted.m2m_db_table())} gp"
        f" ON gp.{quote(granted.m2m_column_name())} = ug.{quote(membership.m2m_reverse_name())}"
        f" WHERE ug.{quote(membership.m2m_column_name())} = %s AND gp.{quote(granted.m2m_reverse_name())} = {p_id}))"
    )
    return f"{held} LIMIT 1", f"{exists} LIMIT 1"
