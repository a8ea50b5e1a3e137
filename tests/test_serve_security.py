"""``workbench serve`` from outside: sign-in, origins, XSRF, session tokens, rate limits, roles and the audit log.

One server (module-scoped: start-ups are slow) with a credentials file of three users
and a rules file that fires at once; real HTTP (httpx), real websockets
(websocket-client) and Debian's chromium (Playwright) for the login and the actions.
Clients that must not share a rate-limit bucket connect from their own loopback
address (127.0.0.2, 127.0.0.3 …).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
import websocket

from tests.browser import launch, until
from tests.conftest import cli
from workbench.security.audit import AuditLog

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

USERS = {
    "opal": ("operator", "operator-pass-123"),
    "vic": ("viewer", "viewer-pass-1234"),
    "ada": ("admin", "admin-pass-12345"),
}
RULES = """evaluation_interval: 1s
rules:
  - name: always
    kind: threshold
    metric: cpu_mean
    op: ">"
    value: -1
    severity: warning
    summary: "{entity} is watched"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``workbench serve --credentials`` on a free port; yields a dict of its base URL, port and files."""
    root = tmp_path_factory.mktemp("served")
    creds = root / "users.json"
    for name, (role, password) in USERS.items():
        r = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "users", "add", name, "--role", role, "--credentials", creds],
            input=password + "\n",
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    (root / "rules.yaml").write_text(RULES)
    port = _free_port()
    env = {
        **os.environ,
        "WORKBENCH_AUDIT_LOG": str(root / "audit.jsonl"),
        "WORKBENCH_LAKE": str(root / "lake"),
        "WORKBENCH_CHECKPOINTS": str(root / "checkpoints"),
        "WORKBENCH_CHECKPOINT_KEY": "ab" * 32,
        "WORKBENCH_WINDOW": "1s",
        "WORKBENCH_LATENESS": "1s",
        "WORKBENCH_HOSTS": "8",
        "WORKBENCH_RATE": "80",
    }
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--credentials", str(creds),
         "--rules", str(root / "rules.yaml"), "--", "--check-unused-sessions", "1000",
         "--unused-session-lifetime", "1000"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    base = f"http://localhost:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/login", timeout=10).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        pytest.fail("the server did not start: " + (root / "serve.log").read_text()[-2000:])
    yield {"base": base, "port": port, "root": root, "audit": AuditLog(root / "audit.jsonl")}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def _client(local: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client from loopback address ``local`` that follows no redirect and keeps no cookie of its own."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local), follow_redirects=False, timeout=30)


def _cookies(response: httpx.Response) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return {k: m.value for k, m in jar.items()}


def _set_cookie(response: httpx.Response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


def _header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def _login(server, name: str, password: str, *, local: str = "127.0.0.1", next_: str = "/monitor"):
    """POST the login form as a browser would (XSRF cookie and field); returns (response, cookies)."""
    with _client(local) as c:
        page = c.get(f"{server['base']}/login", params={"next": next_})
        xsrf = _cookies(page)["_xsrf"]
        r = c.post(
            f"{server['base']}/login",
            data={"username": name, "password": password, "next": next_, "_xsrf": xsrf},
            headers=_header({"_xsrf": xsrf}),
        )
        return r, {**_cookies(page), **_cookies(r)}


@pytest.fixture(scope="module")
def signed_in(server):
    """Cookies of each user, signed in once (from their own loopback address)."""
    out = {}
    for i, (name, (_role, password)) in enumerate(USERS.items()):
        r, cookies = _login(server, name, password, local=f"127.0.0.{10 + i}")
        assert r.status_code == 302, r.text
        out[name] = cookies
    return out


def _token(server, cookies: dict[str, str], **headers: str) -> str:
    with _client() as c:
        r = c.get(f"{server['base']}/monitor", headers={**_header(cookies), **headers})
        assert r.status_code == 200, r.status_code
    start = r.text.index('"token":"') + len('"token":"') if '"token":"' in r.text else r.text.index("token = '") + 9
    return r.text[start : r.text.index(r.text[start - 1], start)]


def _payload(token: str) -> dict:
    part = token.split(".")[1] if token.count(".") == 2 else token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _ws(server, token: str, cookies: dict[str, str] | None, origin: str | None):
    url = f"ws://localhost:{server['port']}/monitor/ws"
    headers = [f"Cookie: {_header(cookies)['Cookie']}"] if cookies else []
    options: dict = {"subprotocols": ["bokeh", token], "header": headers, "timeout": 20}
    if origin is None:
        options["suppress_origin"] = True
    else:
        options["origin"] = origin
    return websocket.create_connection(url, **options)


# -- sign-in ---------------------------------------------------------------------------------
def test_an_unauthenticated_get_redirects_to_the_login_page(server):
    with _client() as c:
        r = c.get(f"{server['base']}/monitor")
    assert r.status_code == 302
    assert "login?next=%2Fmonitor" in r.headers["location"]


def test_login_sets_a_signed_httponly_secure_samesite_cookie_and_is_audited(server):
    r, cookies = _login(server, "opal", USERS["opal"][1], local="127.0.0.2")
    assert r.status_code == 302 and r.headers["location"] == "/monitor"
    flags = _set_cookie(r, "workbench_user").lower()
    assert "httponly" in flags and "secure" in flags and "samesite=lax" in flags
    assert cookies["workbench_user"] != "opal"  # signed, not the bare name
    wrong, _ = _login(server, "opal", "not-the-password", local="127.0.0.2")
    assert wrong.status_code == 401 and "workbench_user" not in _cookies(wrong)
    logins = [(r["who"], r["outcome"], r["client"]) for r in server["audit"].read() if r["action"] == "login"]
    assert ("opal", "ok", "127.0.0.2") in logins and ("opal", "refused", "127.0.0.2") in logins


def test_a_post_without_the_xsrf_token_is_403(server):
    with _client("127.0.0.3") as c:
        r = c.post(f"{server['base']}/login", data={"username": "opal", "password": USERS["opal"][1]})
    assert r.status_code == 403
    assert "workbench_user" not in _cookies(r)


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example", "/%2F/evil.example"])
def test_next_pointing_away_is_not_followed(server, target):
    r, _ = _login(server, "vic", USERS["vic"][1], local="127.0.0.4", next_=target)
    assert r.status_code == 302
    assert r.headers["location"] == "/monitor"


def test_the_eleventh_wrong_password_in_a_minute_is_rate_limited(server):
    codes = [_login(server, "nobody", f"guess-{i}", local="127.0.0.5")[0].status_code for i in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    refused = [r for r in server["audit"].read() if r["action"] == "login" and r["client"] == "127.0.0.5"]
    assert len(refused) == 11 and refused[-1]["detail"] == "rate limit or lock-out"


def test_a_removed_or_unknown_cookie_is_no_sign_in(server):
    with _client() as c:
        r = c.get(f"{server['base']}/monitor", headers={"Cookie": "workbench_user=ada"})  # forged: not signed
    assert r.status_code == 302


# -- every response ------------------------------------------------------------------------
def test_pages_carry_no_store_and_refuse_framing(server, signed_in):
    with _client() as c:
        for path, cookies in (("/login", {}), ("/monitor", signed_in["vic"]), ("/workbench/health", signed_in["vic"])):
            r = c.get(f"{server['base']}{path}", headers=_header(cookies))
            assert r.status_code in (200, 503), (path, r.status_code)
            assert r.headers["cache-control"] == "no-store", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path


def test_a_foreign_host_header_is_refused(server):
    with _client() as c:
        assert c.get(f"{server['base']}/login", headers={"Host": "evil.example"}).status_code == 400
        look_alike = f"localhost:{server['port']}.evil.test"
        assert c.get(f"{server['base']}/login", headers={"Host": look_alike}).status_code == 400
        assert c.get(f"{server['base']}/login").status_code == 200


def test_the_session_token_carries_no_request_header_or_cookie(server, signed_in):
    cookies = {**signed_in["vic"], "sso_session": "secret-sso-cookie"}
    token = _token(server, cookies, Authorization="Bearer proxy-secret")
    payload = _payload(token)
    assert payload.get("headers", {}) == {} and payload.get("cookies", {}) == {}
    assert "proxy-secret" not in json.dumps(payload) and "secret-sso-cookie" not in json.dumps(payload)


def test_page_loads_are_rate_limited_per_client(server):
    with _client("127.0.0.6") as c:
        codes = [c.get(f"{server['base']}/monitor").status_code for _ in range(61)]
    assert codes[:60] == [302] * 60 and codes[60] == 429
    with _client("127.0.0.7") as c:  # another client is not held up
        assert c.get(f"{server['base']}/monitor").status_code == 302


def test_health_is_behind_sign_in_read_only_and_400_on_bad_values(server, signed_in):
    with _client() as c:
        assert c.get(f"{server['base']}/workbench/health").status_code == 401
        assert c.get(f"{server['base']}/metrics").status_code == 401
        auth = _header(signed_in["vic"])
        assert c.get(f"{server['base']}/workbench/health?since=abc", headers=auth).status_code == 400
        assert c.get(f"{server['base']}/workbench/health?since=nan", headers=auth).status_code == 400
        r = c.get(f"{server['base']}/workbench/health?gc=1", headers=auth)
        assert r.status_code in (200, 503) and "python_objects" not in r.json()
        assert c.get(f"{server['base']}/metrics", headers=auth).status_code == 200


# -- websockets ------------------------------------------------------------------------------
def test_a_websocket_from_an_allowed_origin_with_a_session_connects(server, signed_in):
    token = _token(server, signed_in["vic"])
    ws = _ws(server, token, signed_in["vic"], origin=f"http://localhost:{server['port']}")
    try:
        assert '"msgtype":"ACK"' in ws.recv().replace(" ", "")
    finally:
        ws.close()


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://localhost.evil.test",
        "http://evil-localhost:{port}",
        "http://localhost:{port}.evil.test",
        "http://localhost:{port}@evil.test",
        None,  # no Origin at all
    ],
)
def test_a_foreign_origin_is_refused(server, signed_in, origin):
    token = _token(server, signed_in["vic"])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _ws(server, token, signed_in["vic"], origin=None if origin is None else origin.format(port=server["port"]))
    assert refused.value.status_code == 403


def test_an_unauthenticated_websocket_is_refused(server, signed_in):
    token = _token(server, signed_in["vic"])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _ws(server, token, None, origin=f"http://localhost:{server['port']}")
    assert refused.value.status_code == 403


def test_a_tampered_session_is_refused(server, signed_in):
    token = _token(server, signed_in["vic"])
    head, body, sig = token.split(".") if token.count(".") == 2 else (None, *token.split("."))
    forged_payload = dict(_payload(token), session_id="forged-session-id")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_payload).encode()).decode().rstrip("=")
    forged = ".".join(p for p in (head, forged_body, sig) if p is not None)
    ws = _ws(server, forged, signed_in["vic"], origin=f"http://localhost:{server['port']}")
    received: list[str] = []
    try:  # the server closes it without an ACK
        while len(received) < 5:
            received.append(str(ws.recv()))
    except (websocket.WebSocketConnectionClosedException, websocket.WebSocketTimeoutException, ConnectionError):
        pass
    finally:
        ws.close()
    assert len(received) < 5 and not any('"msgtype":"ACK"' in m.replace(" ", "") for m in received)
    with _client() as c:  # a made-up session id on the page is refused too
        r = c.get(f"{server['base']}/monitor?bokeh-session-id=forged", headers=_header(signed_in["vic"]))
    assert r.status_code == 403


# -- roles, on the server, in a browser ------------------------------------------------------
_SELECT_FIRST = """() => {
  for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    if (m.constructor.__name__ === 'DataTabulator' && m.source && m.source.get_length() > 0
        && m.columns.some(c => c.field === 'fingerprint')) {
      m.source.selected.indices = [0];
      const col = m.source.data instanceof Map ? m.source.data.get('fingerprint') : m.source.data['fingerprint'];
      return col[0];
    }
  }
  return null;
}"""


def _browser_login(page, server, name: str) -> None:
    page.goto(f"{server['base']}/monitor")
    page.wait_for_url("**/login**")
    page.fill("#username", name)
    page.fill("#password", USERS[name][1])
    page.click("button[type=submit]")
    page.wait_for_url("**/monitor")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)


def _acknowledge_first(page) -> str:
    """Select the first alert and press Acknowledge: the websocket message any client can send."""
    page.locator(".bk-tab", has_text="Alerts").click()
    button = page.get_by_role("button", name="Acknowledge")
    button.wait_for(timeout=60_000)
    fingerprint = until(lambda: page.evaluate(_SELECT_FIRST), 60)
    assert fingerprint, "no alert row to act on"
    page.wait_for_timeout(500)  # the selection reaches the server before the click
    button.click()
    return fingerprint


def _until_audited(page, audit: AuditLog, who: str) -> tuple[str, list]:
    """Acknowledge until the server records it: a redraw of the table between selecting and clicking
    clears the selection (the click then acts on nothing), as a person would click again."""
    fp, rows = "", []
    for _ in range(4):
        fp = _acknowledge_first(page)
        rows = until(lambda: [r for r in audit.read() if r["action"] == "acknowledge" and r["who"] == who], 40)
        if rows:
            break
    return fp, rows


def test_a_viewer_cannot_acknowledge_an_operator_can_and_both_are_audited(server):
    from playwright.sync_api import sync_playwright

    audit = server["audit"]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            _browser_login(page, server, "vic")
            fp, refused = _until_audited(page, audit, "vic")
            # the table may re-sort between the selection and the click: the row acted on is an alert of the rule
            assert refused and refused[-1]["outcome"] == "refused" and refused[-1]["what"].startswith("always/")
            assert fp.startswith("always/")
            assert page.locator(".bk-tab", has_text="Audit").count() == 0  # admins only

            page = browser.new_page()
            _browser_login(page, server, "opal")
            _, done = _until_audited(page, audit, "opal")
            assert done and done[-1]["outcome"] == "ok" and done[-1]["what"].startswith("always/")
            assert done[-1]["before"]["acknowledged_by"] is None and done[-1]["after"]["acknowledged_by"] == "opal"
            assert done[-1]["role"] == "operator"

            page = browser.new_page()
            _browser_login(page, server, "ada")
            page.locator(".bk-tab", has_text="Audit").click()
            page.locator(".tabulator-cell", has_text="acknowledge").first.wait_for(timeout=180_000)
        except Exception:
            page.screenshot(path=str(Path(__file__).parent / "artifacts" / "serve-security.png"), full_page=True)
            raise
        finally:
            browser.close()
    # the acknowledgement survives a restart: the served alert state was checkpointed
    saved = until(lambda: list((server["root"] / "checkpoints" / "served-alerts").glob("*.wbck")), 60)
    assert saved


# -- the prod profile ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prod") / "users.json"
    from workbench.security.credentials import Credentials

    Credentials(path).add("ada", "admin", "admin-pass-12345")
    secret = path.with_name("cookie.key")
    secret.write_text("cd" * 32)
    secret.chmod(0o600)
    return path, secret


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["--cookie-secret-file", "{secret}"], "authentication: none configured"),
        (["--credentials", "{users}"], "cookie secret: none configured"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--allow-origin", "*"], "websocket origins"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--no-xsrf"], "XSRF cookies: off"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--", "--session-ids", "unsigned"],
         "session ids: unsigned"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--", "--dev"], "--dev: on"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--", "--autoreload"], "--autoreload: on"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--", "--admin"], "--admin: on"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--address", "0.0.0.0"], "address:"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--tls-cert", "c.pem"], "TLS:"),
        (["--oauth-provider", "generic", "--cookie-secret-file", "{secret}"], "OAuth encryption key"),
        (["--credentials", "{users}", "--cookie-secret-file", "{secret}", "--", "--cookie-secret", "x"],
         "--cookie-secret: a secret on the command line"),
    ],
)  # fmt: skip
def test_prod_refuses_each_unsafe_setting_naming_it_and_the_fix(users_file, args, setting):
    users, secret = users_file
    filled = [a.format(users=users, secret=secret) for a in args]
    r = cli("serve", "--profile", "prod", "--port", _free_port(), *filled)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("workbench: error: serve --profile prod: refused to start")
    assert setting in r.stderr and "fix:" in r.stderr
    assert "cd" * 32 not in r.stderr + r.stdout  # the secret never shows


def test_prod_accepts_a_safe_setup_and_old_versions_are_refused():
    from workbench.security.profile import ServeOptions, problems

    safe = ServeOptions(profile="prod", address="127.0.0.1", credentials="u.json", cookie_secret=True)
    assert problems(safe, versions={"bokeh": "3.9.2", "panel": "1.9.4"}) == []
    old = problems(safe, versions={"bokeh": "3.8.1", "panel": "1.8.0"})
    assert [p.setting for p in old] == ["bokeh version", "panel version"]
    assert "GHSA-793v-589g-574v" in str(old[0])
    proxied = ServeOptions(profile="prod", address="0.0.0.0", credentials="u", cookie_secret=True, behind_proxy=True)
    assert problems(proxied, versions={"bokeh": "3.9.2", "panel": "1.9.4"}) == []


def test_doctor_prints_the_versions_and_a_verdict():
    r = cli("doctor")
    assert r.returncode == 0, r.stderr
    assert "bokeh" in r.stdout and "panel" in r.stdout and "verdict: ready for --profile prod" in r.stdout


def test_users_add_reads_the_password_from_stdin_never_argv(tmp_path):
    path = tmp_path / "users.json"
    r = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "users", "add", "kim", "--role", "viewer", "--credentials", path],
        input="a-long-password-1\n", capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "a-long-password-1" not in path.read_text() and "$argon2id$" in path.read_text()
    short = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "users", "add", "kim", "--role", "viewer", "--credentials", path],
        input="short\n", capture_output=True, text=True,
    )  # fmt: skip
    assert short.returncode == 2 and "at least 12 characters" in short.stderr


def test_dev_banner_says_it_is_not_for_a_network():
    from workbench.apps.serve import banner

    assert "NOT for a network" in banner("dev", "localhost", "no sign-in")
    assert "NOT" not in banner("prod", "127.0.0.1", "users of u.json")


def test_readme_has_a_serving_for_a_team_section():
    assert "## Serving for a team" in (Path(__file__).parents[1] / "README.md").read_text()
