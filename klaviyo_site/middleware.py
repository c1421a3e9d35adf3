"""Project-wide request filters."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

NUL = "\x00"
# Django's session keys: 32 characters of lowercase letters and digits.
SESSION_KEY = re.compile(r"[a-z0-9]{32}")


def reject_malformed_requests(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Answer a plain 400 to requests no page of this site could handle.

    * A NUL character in the path, query string or cookies. No legitimate request
      carries one, and PostgreSQL text cannot hold it: Django hands a session cookie
      (``sessionid="\\000..."`` unquotes to a NUL) or an admin filter value straight to a
      query, which then fails with DataError, a 500.
    * More query parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS. Django answers 400 too,
      except under DEBUG, where its error page reads the parameters again and fails.

    A session cookie that cannot be a session key is dropped instead: the request goes on
    without a session, and nothing is looked up for it.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        try:
            query = request.GET.lists()
        except TooManyFieldsSent:
            return HttpResponseBadRequest("Too many query parameters.", content_type="text/plain")
        if (
            NUL in request.path
            or any(NUL in name or any(NUL in value for value in values) for name, values in query)
            or any(NUL in name or NUL in value for name, value in request.COOKIES.items())
        ):
            return HttpResponseBadRequest("NUL characters are not allowed.", content_type="text/plain")
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if session_key is not None and not SESSION_KEY.fullmatch(session_key):
            # No session has such a key: don't look it up (in the cache or the database) at all.
            del request.COOKIES[settings.SESSION_COOKIE_NAME]
        return get_response(request)

    return middleware
