def test_healthz_reports_database_and_in_process_queue(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ok" and body["database"]["status"] == "ok"
    assert body["queue"]["backend"] == "in-process"


def test_healthz_reports_rq_when_redis_is_configured(redis_url):
    from meterpay.app import create_app
    body = create_app({"TESTING": True}).test_client().get("/healthz").get_json()
    assert body["queue"]["backend"] == "rq" and body["queue"]["status"] == "ok"
    assert "meters" in body["queue"]["queued"]


def test_healthz_says_503_when_redis_is_down(settings_env):
    settings_env(METERPAY_REDIS_URL="redis://127.0.0.1:1/0")
    from meterpay.app import create_app
    r = create_app({"TESTING": True}).test_client().get("/healthz")
    assert r.status_code == 503 and r.get_json()["queue"]["status"] == "error"
