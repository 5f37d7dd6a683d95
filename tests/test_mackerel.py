import json
import socket

from helpers import ROOT, run_pipeline

from pipeline.mackerel import graph_definitions, metric_names


def test_graph_definitions_use_a_wildcard_for_alike_siblings():
    names = metric_names([{"listeners": {"127_0_0_1_80": {"queue": 1, "backlog": 128},
                                         "__1_80": {"queue": 0, "backlog": 128}},
                           "memory": {"rss": 1, "vsz": 2}, "cpu": {"user": 1},
                           "listen_drops": 2, "name": "text", "top": 1}], prefix="app")
    graphs = graph_definitions(names)["graphs"]
    assert {g: [m["name"] for m in d["metrics"]] for g, d in graphs.items()} == {
        "app.listeners.#": ["queue", "backlog"],   # one graph for every listener
        "app.memory": ["rss", "vsz"], "app.cpu": ["user"],  # under a parent with metrics: kept
        "app": ["listen_drops", "top"],
    }
    one = graph_definitions(metric_names([{"listeners": {"127_0_0_1_80": {"queue": 1}}}], "q"))
    assert list(one["graphs"]) == ["q.listeners.#"]  # a second listener later needs no new meta
    assert graph_definitions(["nodot"]) == {"graphs": {}}


def _conf(tmp_path, port: int):
    conf = tmp_path / "accept-queue.yaml"
    conf.write_text((ROOT / "conf" / "accept-queue.yaml").read_text().replace("[80, 443]", f"[{port}]"))
    return conf


def test_accept_queue_example_as_a_mackerel_plugin(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        conf = _conf(tmp_path, port)
        env = {"PIPELINE_STATE_DIR": str(tmp_path / "state")}
        meta = run_pipeline("run", "--once", str(conf), env={**env, "MACKEREL_AGENT_PLUGIN_META": "1"})
        values = [run_pipeline("run", "--once", str(conf), env=env) for _ in range(2)]
    assert meta.returncode == 0, meta.stderr.decode()
    header, body = meta.stdout.decode().split("\n", 1)
    assert header == "# mackerel-agent-plugin"
    graphs = json.loads(body)["graphs"]
    assert [m["name"] for m in graphs["accept_queue.listeners.#"]["metrics"]] == ["queue", "backlog"]
    assert all(v.returncode == 0 for v in values), values[-1].stderr.decode()
    lines = [line.split("\t") for line in values[1].stdout.decode().splitlines()]
    got = {name: float(value) for name, value, _ in lines}
    key = f"accept_queue.listeners.127_0_0_1_{port}"
    assert got[f"{key}.queue"] == 0 and got[f"{key}.backlog"] == 8
    assert "accept_queue.listen_overflows" in got  # a rate: the second call has the first's sample
