"""Project-wide request filters."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

NUL = "\x00"


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
        return get_response(request)

    return middleware
