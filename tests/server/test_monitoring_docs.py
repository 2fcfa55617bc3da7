"""The monitoring examples (Grafana dashboard, alert rules, scrape config) use only names
the server really exports: checked against a live /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NAME = re.compile(r"\b((?:antinet|process)_[a-z_]+)\b")


def exported_names(url: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def expressions() -> dict[str, list[str]]:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    rules = yaml.safe_load((EXAMPLES / "antinet-alerts.yml").read_text())
    exprs = {"grafana": [t["expr"] for p in dashboard["panels"] for t in p["targets"]],
             "alerts": [r["expr"] for g in rules["groups"] for r in g["rules"]]}
    exprs["grafana"].append(dashboard["templating"]["list"][0]["definition"])
    return exprs


def test_dashboard_and_alerts_use_exported_names(start_server, tiny_model):
    server = start_server(tiny_model, max_new_tokens=4)
    httpx.post(server.api + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    exported = exported_names(server.url)
    for where, exprs in expressions().items():
        used = {name for expr in exprs for name in NAME.findall(expr)}
        assert used and used <= exported, (where, used - exported)
    assert yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_the_systemd_unit_runs_serve_headless_and_drains():
    unit = (EXAMPLES / "antinet-tui.service").read_text()
    assert re.search(r"^ExecStart=\S+antinet-tui serve --headless", unit, re.M)
    assert "KillSignal=SIGTERM" in unit and "TimeoutStopSec=45" in unit
