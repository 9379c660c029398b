"""Sign-in: hashed passwords, CSRF on the form, rate limiting, expiring sessions, safe redirects."""
from __future__ import annotations

import time

from tests.admin.conftest import PASSWORD, csrf_of


def test_a_manager_signs_in_and_lands_on_the_monitor_of_their_only_site(manage, factory):
    site = factory.site("东方广场")
    manage.manager("alice", sites=[site])
    resp = manage.sign_in("alice")
    assert resp.status_code == 302
    page = manage.client.get("/admin/", follow_redirects=True)
    assert page.status_code == 200
    assert "东方广场" in page.text and "房间监控" in page.text


def test_the_password_is_stored_hashed(manage, session):
    m = manage.manager("alice", all_sites=True)
    assert PASSWORD not in m.password_hash and m.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(manage):
    manage.manager("alice", all_sites=True)
    resp = manage.sign_in("alice", "wrong password")
    assert resp.status_code == 401
    assert "用户名或密码错误" in resp.text
    assert manage.client.get("/admin/").status_code == 302  # still signed out


def test_pages_need_a_signed_in_manager(client):
    resp = client.get("/admin/audit")
    assert resp.status_code == 302 and "/admin/login" in resp.location
    assert client.get("/admin/sites/1/monitor.json").status_code == 401


def test_the_sign_in_form_without_its_csrf_token_is_refused(manage):
    manage.manager("alice", all_sites=True)
    manage.client.get("/admin/login")
    resp = manage.client.post("/admin/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert manage.client.get("/admin/").status_code == 302


def test_a_forged_csrf_token_is_refused(manage):
    manage.manager("alice", all_sites=True)
    manage.client.get("/admin/login")
    resp = manage.client.post("/admin/login", data={"username": "alice", "password": PASSWORD,
                                                    "csrf_token": "forged"})
    assert resp.status_code == 400


def test_too_many_failed_sign_ins_lock_the_username_even_for_the_right_password(manage):
    manage.manager("alice", all_sites=True)
    for _ in range(5):
        assert manage.sign_in("alice", "guess").status_code == 401
    resp = manage.sign_in("alice", PASSWORD)
    assert resp.status_code == 429
    assert "尝试次数过多" in resp.text


def test_the_limit_is_configurable(manage, monkeypatch):
    monkeypatch.setenv("METERPAY_ADMIN_LOGIN_ATTEMPTS", "2")
    manage.manager("alice", all_sites=True)
    manage.sign_in("alice", "guess")
    manage.sign_in("alice", "guess")
    assert manage.sign_in("alice", PASSWORD).status_code == 429


def test_the_limit_counts_in_redis_when_redis_is_configured(redis_url, manage):
    # Redis first: the web app picks its rate-limit storage when it starts (admin.security.init_app).
    manage.manager("alice", all_sites=True)
    for _ in range(5):
        manage.sign_in("alice", "guess")
    from admin import security
    security.reset_memory_counters()  # the count is not in this process
    assert manage.sign_in("alice", PASSWORD).status_code == 429


def test_an_idle_session_expires(manage, monkeypatch):
    manage.as_manager("alice", all_sites=True)
    assert manage.client.get("/admin/audit").status_code == 200
    with manage.client.session_transaction() as s:
        s["seen_at"] = time.time() - 121 * 60
    resp = manage.client.get("/admin/audit")
    assert resp.status_code == 302 and "expired=1" in resp.location
    assert "登录已过期" in manage.client.get(resp.location).text


def test_a_session_expires_after_its_maximum_age_even_when_busy(manage):
    manage.as_manager("alice", all_sites=True)
    with manage.client.session_transaction() as s:
        s["login_at"] = time.time() - 13 * 3600
    assert manage.client.get("/admin/audit").status_code == 302


def test_a_deactivated_manager_is_signed_out_at_the_next_request(manage, session):
    m = manage.as_manager("alice", all_sites=True)
    m.active = False
    session.commit()
    assert manage.client.get("/admin/audit").status_code == 302


def test_sign_out_ends_the_session(manage):
    manage.as_manager("alice", all_sites=True)
    assert manage.post("/admin/logout").status_code == 302
    assert manage.client.get("/admin/audit").status_code == 302


def test_after_sign_in_the_manager_goes_back_to_the_page_asked_for_but_never_off_site(manage):
    manage.manager("alice", all_sites=True)
    page = manage.client.get("/admin/login")
    resp = manage.client.post("/admin/login?next=/admin/audit",
                              data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    assert resp.location.endswith("/admin/audit")
    manage.post("/admin/logout")
    page = manage.client.get("/admin/login")
    resp = manage.client.post("/admin/login?next=//evil.example/x",
                              data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    assert "evil" not in resp.location


def test_english_is_one_click_away(manage):
    manage.as_manager("alice", all_sites=True)
    manage.client.get("/admin/lang/en")
    assert "Audit log" in manage.client.get("/admin/audit").text
    manage.client.get("/admin/lang/zh")
    assert "操作日志" in manage.client.get("/admin/audit").text


def test_the_session_cookie_is_http_only_and_same_site(manage):
    manage.manager("alice", all_sites=True)
    resp = manage.sign_in("alice")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_language_switch_never_sends_anyone_off_site(client):
    resp = client.get("/admin/lang/en?next=//evil.example/")
    assert "evil" not in resp.location
    resp = client.get("/admin/lang/en?next=https://evil.example/")
    assert "evil" not in resp.location


def test_refusals_are_explained_in_the_managers_language(manage, factory):
    site = factory.site("东方广场")
    manage.as_manager("vera", sites=[site], role="viewer")
    resp = manage.client.get("/admin/tariffs/new")
    assert resp.status_code == 403 and "您没有权限" in resp.text
    assert "没有找到" in manage.client.get("/admin/sites/424242/monitor").text
    assert manage.client.post("/admin/logout").status_code == 400  # no CSRF token


def test_only_admin_requests_go_through_the_rate_limiter(client, monkeypatch):
    """The limits are the sign-in view's: an API request skips Flask-Limiter's per-request
    resolution (issue 13 item 8: it cost ~1 ms of CPU on every request)."""
    from admin.security import limiter
    resolved: list[str | None] = []
    real = limiter.limit_manager.resolve_limits

    def spy(app, endpoint=None, *args, **kwargs):
        resolved.append(endpoint)
        return real(app, endpoint, *args, **kwargs)
    monkeypatch.setattr(limiter.limit_manager, "resolve_limits", spy)
    assert client.get("/api/v1/ping").status_code == 200
    assert resolved == []
    client.get("/admin/login")
    assert "admin.login" in resolved
