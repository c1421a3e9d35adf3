"""Browser fixtures: the system Chromium driven by Playwright (sync API) against a live server.

Without Chromium (at /usr/bin/chromium, or CHROMIUM_PATH) the browser tests are skipped,
unless REQUIRE_BROWSER_TESTS=1, which turns the missing browser into a failure. When a
test fails, a screenshot and the page's HTML are saved to test-artifacts/.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from oauth_integration.klaviyo import close_sessions

# Playwright's sync API keeps an asyncio event loop running in the main thread, where
# Django then refuses ORM calls (SynchronousOnlyOperation). This is Django's documented
# switch for exactly this situation; the ORM is still only used synchronously.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        reason = f"Chromium not found at {path}: browser tests skipped"
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(
                f"Chromium not found at {path}, and REQUIRE_BROWSER_TESTS=1 requires browser tests to run",
                pytrace=False,
            )
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def sandbox_site(live_server, settings) -> Iterator[str]:
    """The live server in sandbox mode as `make run` serves it (DEBUG, open access: no login
    needed), on "localhost" throughout (so session cookies match)."""
    url = live_server.url
    settings.DEBUG = True
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_OPEN_ACCESS = True
    settings.KLAVIYO_CLIENT_ID = "sandbox-client-id"
    settings.KLAVIYO_CLIENT_SECRET = "sandbox-client-secret"
    settings.KLAVIYO_AUTHORIZE_URL = f"{url}/sandbox/oauth/authorize"
    settings.KLAVIYO_BASE_URL = f"{url}/sandbox"
    settings.KLAVIYO_REDIRECT_URL = f"{url}/authorize"
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 3600
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = False
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 0
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    yield url
    # Drop the integration's kept-alive connections to the sandbox, so the server threads
    # serving them end and release their database connections.
    close_sessions()


@pytest.fixture
def page(browser, request) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    report = request.node.stash.get(_REPORTS, {}).get("call")
    if report is not None and report.failed:
        _save_artifacts(page, request.node.nodeid)
    context.close()


def _save_artifacts(page: Page, nodeid: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", nodeid)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(page.content(), encoding="utf-8")
    except PlaywrightError as exc:
        (ARTIFACTS / f"{name}.txt").write_text(f"Could not capture the page: {exc}\n", encoding="utf-8")
