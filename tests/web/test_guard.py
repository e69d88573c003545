"""The web app's request checks (tidings.web.guard): host, origin, token, method, body type."""

from __future__ import annotations

import pytest

from tidings.web.guard import Guard, Verdicts

TOKEN = "t" * 43
PORT = 5000
GOOD = {"host": f"127.0.0.1:{PORT}"}
COOKIE = {f"tidings_token_{PORT}": TOKEN}
JSON = {**GOOD, "origin": f"http://127.0.0.1:{PORT}", "content-type": "application/json"}


def check(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> tuple[Verdicts, int]:
    v = Guard(TOKEN, PORT).check(
        method,
        path,
        query,
        GOOD if headers is None else headers,
        COOKIE if cookies is None else cookies,
    )
    return v.kind, v.status


def test_the_apps_own_requests_pass() -> None:
    assert check() == (Verdicts.ALLOW, 200)
    assert check(headers={"host": f"localhost:{PORT}"}) == (Verdicts.ALLOW, 200)
    assert check("POST", "/api/send", headers=JSON) == (Verdicts.ALLOW, 200)
    assert (
        check(
            "POST", "/api/send", headers={**JSON, "content-type": "application/json; charset=utf-8"}
        )[0]
        is Verdicts.ALLOW
    )


def test_the_token_in_the_url_becomes_a_cookie() -> None:
    assert check(query=f"token={TOKEN}", cookies={}) == (Verdicts.ADOPT_TOKEN, 303)
    assert check(query="token=" + "x" * 43, cookies={}) == (Verdicts.REFUSE, 401)


@pytest.mark.parametrize(
    "cookies",
    [
        {},
        {f"tidings_token_{PORT}": "x" * 43},
        {f"tidings_token_{PORT + 1}": TOKEN},
        {"tidings_token_": TOKEN},
    ],
)
def test_no_session_no_answer(cookies: dict[str, str]) -> None:
    """Without the token (or with another app's cookie) nothing is served, not even the page."""
    assert check(cookies=cookies) == (Verdicts.REFUSE, 401)
    assert check("POST", "/api/send", headers=JSON, cookies=cookies) == (Verdicts.REFUSE, 401)


@pytest.mark.parametrize("host", ["evil.example:5000", f"127.0.0.1:{PORT + 1}", "127.0.0.1", ""])
def test_dns_rebinding_is_refused(host: str) -> None:
    """A page whose name now resolves to 127.0.0.1 still sends its own name as Host."""
    assert check(headers={"host": host}) == (Verdicts.REFUSE, 421)
    assert check("POST", "/api/send", headers={**JSON, "host": host}) == (Verdicts.REFUSE, 421)


@pytest.mark.parametrize("origin", ["https://evil.example", f"http://127.0.0.1:{PORT + 1}", "null"])
def test_cross_site_requests_are_refused(origin: str) -> None:
    assert check("POST", "/api/send", headers={**JSON, "origin": origin}) == (Verdicts.REFUSE, 403)
    assert check(headers={**GOOD, "origin": origin}) == (Verdicts.REFUSE, 403)


def test_no_state_change_on_get_and_no_form_posts() -> None:
    assert check("GET", "/api/send") == (Verdicts.REFUSE, 405)
    assert check("POST", "/", headers=JSON) == (Verdicts.REFUSE, 405)
    form = {**JSON, "content-type": "application/x-www-form-urlencoded"}
    assert check("POST", "/api/send", headers=form) == (Verdicts.REFUSE, 415)
    assert check("POST", "/api/send", headers={**GOOD}) == (Verdicts.REFUSE, 415)
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        assert check(method, "/api/send", headers=JSON) == (Verdicts.REFUSE, 405)
