"""serve --metrics: GET /metrics in the Prometheus text format, counted on real sockets."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sseplay import Server, Stream
from sseplay.errors import CannotServe, ExitCode
from tests.conftest import ROOT, ServeProcess, run_cli, write_json
from tests.redis_server import RedisServer
from tests.support import wait_until

FIVE = [{"n": n} for n in range(5)]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str, **kwargs: object) -> Samples:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    response = httpx.get(base + "/metrics", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ended_outcomes(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["outcome"]: count
        for (name, labels), count in samples.items()
        if name == "sseplay_connections_ended_total" and count
    }


def test_a_client_that_closes_mid_stream_left_whichever_side_saw_it_first() -> None:
    # At 1 ms a write often finds the connection gone before the request task hears of
    # it: that is still the client leaving, not a server error.
    records = [{"n": n} for n in range(100_000)]
    with Server(Stream.from_records(records, interval=0.001), metrics=True, ping=0) as server:
        for _ in range(8):
            with httpx.stream("GET", server.url, timeout=10) as response:
                lines = response.iter_lines()
                while not next(lines).startswith("data:"):
                    pass
        wait_until(lambda: sum(ended_outcomes(scrape(server.base_url)).values()) == 8)
        assert ended_outcomes(scrape(server.base_url)) == {"client_left": 8}


def test_three_clients_of_five_events_count_fifteen_and_how_each_ended() -> None:
    with Server(Stream.from_records(FIVE, interval=0), metrics=True, ping=0) as server:
        base = server.base_url
        for _ in range(3):
            assert httpx.get(server.url, timeout=10).text.count("data:") == 5
        wait_until(lambda: server.connections == 0)
        samples = scrape(base)
        assert value(samples, "sseplay_events_sent_total", route="/events") == 15
        assert value(samples, "sseplay_connections", route="/events") == 0
        ended = value(samples, "sseplay_connections_ended_total", route="/events", outcome="end")
        assert ended == 3
        # The process collectors are there too.
        assert value(samples, "process_cpu_seconds_total") > 0
        assert any(name.startswith("python_gc_") for name, _ in samples)


def test_an_open_stream_is_counted_while_it_is_open() -> None:
    records = [{"n": n} for n in range(10_000)]
    with (
        Server(Stream.from_records(records, interval=0.01), metrics=True, ping=0) as server,
        httpx.stream("GET", server.url, timeout=10) as response,
    ):
        lines = response.iter_lines()
        got = 0
        while got < 20:
            got += next(lines).startswith("data:")
        samples = scrape(server.base_url)
        assert value(samples, "sseplay_connections", route="/events") == 1
        assert value(samples, "sseplay_events_sent_total", route="/events") >= 20
        lag_count = value(samples, "sseplay_send_lag_seconds_count")
        assert lag_count >= 20  # one per timer round that wrote
        assert value(samples, "sseplay_send_lag_seconds_bucket", le="+Inf") == lag_count
        response.close()
        wait_until(lambda: server.connections == 0)
        samples = scrape(server.base_url)
    assert ended_outcomes(samples) == {"client_left": 1}
    assert value(samples, "sseplay_connections", route="/events") == 0


def test_resumes_are_counted_by_how_the_last_event_id_was_taken() -> None:
    with Server(Stream.from_records(FIVE, interval=0), metrics=True, ping=0) as server:
        for last in ("2", "no-such-id", "5"):
            response = httpx.get(server.url, headers={"Last-Event-ID": last}, timeout=10)
            assert response.status_code == (204 if last == "5" else 200)
        wait_until(lambda: server.connections == 0)
        samples = scrape(server.base_url)
    for result in ("exact", "unknown", "204"):
        assert value(samples, "sseplay_resumes_total", route="/events", result=result) == 1
    assert value(samples, "sseplay_connections_ended_total", route="/events", outcome="204") == 1
    # 3 events after id 2, 5 replayed for the unknown id, none for the 204.
    assert value(samples, "sseplay_events_sent_total", route="/events") == 8


def test_fired_faults_and_cut_connections_are_counted_by_kind() -> None:
    stream = Stream.from_records(FIVE, interval=0)
    with Server(stream, metrics=True, ping=0, faults="status:code=503,times=1") as server:
        assert httpx.get(server.url, timeout=10).status_code == 503
        assert httpx.get(server.url, timeout=10).status_code == 200
        samples = scrape(server.base_url)
    assert value(samples, "sseplay_faults_fired_total", kind="status") == 1


def test_metrics_needs_the_token_when_one_is_set() -> None:
    with Server(Stream.from_records(FIVE), metrics=True, token="s3cret") as server:
        refused = httpx.get(server.base_url + "/metrics", timeout=10)
        assert refused.status_code == 401
        assert "sseplay_" not in refused.text
        scrape(server.base_url, headers={"Authorization": "Bearer s3cret"})
        scrape(server.base_url, params={"token": "s3cret"})


def test_without_metrics_there_is_no_metrics_route_and_no_prometheus_import() -> None:
    program = f"""
import sys, httpx
from sseplay import Server, Stream
with Server(Stream.from_records({FIVE!r})) as server:
    print(httpx.get(server.base_url + "/metrics").status_code)
print("prometheus_client" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.stdout.split() == ["404", "False"], result.stderr
    # Nor does the CLI's help.
    helping = """
import sys
from sseplay.cli import main
try:
    main(["serve", "--help"])
except SystemExit:
    pass
print("prometheus_client" in sys.modules)
"""
    help_run = subprocess.run(
        [sys.executable, "-c", helping], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "--metrics" in help_run.stdout
    assert help_run.stdout.splitlines()[-1] == "False"


def test_a_missing_prometheus_client_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(CannotServe, match=r"pip install 'sseplay\[metrics\]'"):
        Server(Stream.from_records(FIVE), metrics=True)
    events = write_json(tmp_path / "five.json", FIVE)
    program = (
        "import sys\nsys.modules['prometheus_client'] = None\nfrom sseplay.cli import main\n"
        f"main(['serve', {str(events)!r}, '--metrics', '--port', '0'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == ExitCode.CANNOT_SERVE
    assert result.stderr == (
        "sseplay: error: --metrics needs prometheus-client: pip install 'sseplay[metrics]'\n"
    )


def test_a_route_named_like_an_operations_route_is_refused() -> None:
    result = run_cli("serve", "metrics=samples/scores.json", "--port", "0")
    assert result.returncode == ExitCode.USAGE
    assert "/metrics is taken by sseplay itself" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")
def test_with_two_workers_every_scrape_shows_the_sum_of_both(tmp_path: Path) -> None:
    short = write_json(tmp_path / "short.json", FIVE)
    long = write_json(tmp_path / "long.json", [{"n": n} for n in range(100_000)])
    args = (f"/short={short}", f"/long={long}", "--workers", "2", "--metrics", "--interval", "0.05")
    with ServeProcess(*args) as server:
        base = server.url.rsplit("/", 1)[0]
        for _ in range(20):
            assert httpx.get(base + "/short", timeout=10).text.count("data:") == 5
        held = [httpx.stream("GET", base + "/long", timeout=10) for _ in range(20)]
        responses = [stream.__enter__() for stream in held]
        try:
            workers = set()
            for response in responses:
                assert response.status_code == 200
            deadline = time.monotonic() + 15
            while value(scrape(base), "sseplay_connections", route="/long") != 20:
                assert time.monotonic() < deadline, scrape(base)
                time.sleep(0.05)
            for _ in range(20):  # new connections: the kernel spreads them over both
                samples = scrape(base)
                assert value(samples, "sseplay_connections", route="/long") == 20
                assert value(samples, "sseplay_events_sent_total", route="/short") == 100
                ended = value(
                    samples, "sseplay_connections_ended_total", route="/short", outcome="end"
                )
                assert ended == 20
                workers.add(httpx.get(base + "/healthz", timeout=10).json()["worker"])
            assert len(workers) == 2, "one worker answered every request"
            directory = next(Path("/tmp").glob("sseplay-metrics-*"), None)
            assert directory is not None
        finally:
            for stream in held:
                stream.__exit__(None, None, None)
        code, _, err = server.stop()
    assert code == 0, err
    assert not directory.exists(), "the supervisor left its metrics directory"


def test_redis_resumes_are_counted_once_their_entry_is_looked_up(tmp_path: Path) -> None:
    import redis

    with RedisServer(tmp_path / "redis") as running:
        client = redis.Redis(port=running.port)
        first = client.xadd("events", {"data": "one"}).decode()
        client.xadd("events", {"data": "two"})
        with ServeProcess(running.url("events"), "--metrics", "--ping", "0.2") as process:
            base = process.url.rsplit("/", 1)[0]
            wait_until(lambda: httpx.get(base + "/readyz").status_code == 200, timeout=10)
            for last in (first, "not-an-id"):
                with httpx.stream(
                    "GET", process.url, headers={"Last-Event-ID": last}, timeout=10
                ) as response:
                    assert response.status_code == 200
                    next(response.iter_lines())
            route = "/events"
            wait_until(
                lambda: (
                    value(scrape(base), "sseplay_resumes_total", route=route, result="unknown") == 1
                )
            )
            samples = scrape(base)
        client.close()
    assert value(samples, "sseplay_resumes_total", route=route, result="exact") == 1
