import asyncio
import json

from aiohttp import web
from helpers import ROOT, make_plugin, run_pipeline


async def _serve(routes: dict):
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


STATS = {"beam": {"processes": 412, "memory": {"total": 51234567}},
         "schedulers": [{"id": 1, "util": 0.25}, {"id": 2, "util": 0.5}]}


async def _stats(request):
    return web.json_response(STATS)


async def _html(request):
    return web.Response(text="<html>oops</html>", content_type="text/html")


async def _missing(request):
    return web.Response(status=503, text="down for maintenance")


async def _slow(request):
    await asyncio.sleep(5)
    return web.json_response({})


async def _poll(base: str, errors: list | None = None, **options):
    src = make_plugin("source", "http_json", errors=errors, **options)
    await src.start()
    try:
        return src, await src.poll()
    finally:
        await src.stop()


def test_document_path_and_split():
    async def main():
        runner, base = await _serve({"/stats": _stats})
        try:
            _, whole = await _poll(base, url=f"{base}/stats", tag="beam")
            _, part = await _poll(base, url=f"{base}/stats", path="beam.memory")
            _, one = await _poll(base, url=f"{base}/stats", path="schedulers.1.util")
            _, split = await _poll(base, url=f"{base}/stats", path="schedulers", split=True)
        finally:
            await runner.cleanup()
        assert [(t, r) for t, _, r in whole] == [("beam", STATS)]
        assert [r for _, _, r in part] == [{"total": 51234567}]
        assert [r for _, _, r in one] == [{"value": 0.5}]
        assert [r for _, _, r in split] == STATS["schedulers"]
    asyncio.run(main())


def test_bad_answers_are_counted_and_the_next_poll_goes_on():
    async def main():
        runner, base = await _serve({"/stats": _stats, "/html": _html, "/missing": _missing,
                                     "/slow": _slow})
        errors: list = []
        try:
            html, got_html = await _poll(base, errors, url=f"{base}/html")
            missing, got_missing = await _poll(base, errors, url=f"{base}/missing")
            slow, got_slow = await _poll(base, errors, url=f"{base}/slow", timeout="200ms")
            bad_path, got_bad_path = await _poll(base, errors, url=f"{base}/stats", path="nope.x")
            src = make_plugin("source", "http_json", url=f"{base}/html")
            await src.start()
            try:
                assert await src.poll() == []
                src.conf.url = f"{base}/stats"
                assert len(await src.poll()) == 1
            finally:
                await src.stop()
        finally:
            await runner.cleanup()
        assert got_html == got_missing == got_slow == got_bad_path == []
        assert html.ctx.counters["bad_json"] == 1
        assert missing.ctx.counters["http_status"] == 1
        assert slow.ctx.counters["errors"] == 1
        assert bad_path.ctx.counters["bad_path"] == 1
        kinds = [e[2]["kind"] for e in errors]
        assert kinds == ["bad_json", "http_status", "bad_path"]
        assert "503" in errors[1][2]["error"] and errors[1][2]["sample"] == "down for maintenance"
    asyncio.run(main())


def test_server_down_is_a_health_failure_not_a_crash():
    async def main():
        runner, base = await _serve({})
        await runner.cleanup()  # the port is now closed
        src, got = await _poll(base, url=f"{base}/stats", timeout="1s")
        return src, got
    src, got = asyncio.run(main())
    assert got == [] and src.ctx.counters["errors"] == 1


def test_beam_stats_example_conf(tmp_path):
    out = tmp_path / "beam.jsonl"

    async def main():
        runner, base = await _serve({"/ops/stats": _stats})
        try:
            return await asyncio.to_thread(
                run_pipeline, "run", "--once", str(ROOT / "conf" / "beam-stats.yaml"),
                env={"BEAM_STATS_URL": f"{base}/ops/stats", "BEAM_STATS_FILE": str(out)})
        finally:
            await runner.cleanup()
    result = asyncio.run(main())
    assert result.returncode == 0, result.stderr.decode()
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"processes": 412, "memory.total": 51234567}]
