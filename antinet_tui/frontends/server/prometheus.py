"""Prometheus metrics for the served engine, in base units with Prometheus's names.

Two kinds, after vLLM's metrics design:

* request-level figures, fed by the runtime's events (so a typed prompt and a served one
  count alike): histograms of time to first token, end-to-end latency, time per output
  token and queue wait (finished requests only, as the dashboard's charts); counters of
  requests by outcome, of refusals by cause, of prompt and generated tokens, of breaker
  transitions;
* server-level gauges, read from the runtime's snapshots when Prometheus scrapes (never
  stale): requests waiting and running, the breaker's state, the mode in effect, the
  service state, model and backend info, connected HTTP clients; and the process
  collector (CPU seconds, resident memory, open fds, threads via /proc).

Each server has its own registry, so several servers (tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from antinet_tui.runtime.breaker import BreakerState
from antinet_tui.runtime.client import EngineClient
from antinet_tui.runtime.events import Accepted, BreakerTransition, Cancelled, Event, Failed, Finished, Rejected

PREFIX = "antinet"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
TPOT_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OUTCOMES = ("finished", "cancelled", "failed", "rejected")
REJECT_CAUSES = ("queue_full", "queue_timeout", "breaker_open", "bad_input", "not_ready", "reserved")


class ServerMetrics:
    def __init__(self, client: EngineClient, connected_clients: Callable[[], int] = lambda: 0,
                 draining: Callable[[], bool] = lambda: False):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds",
                              "From the engine starting a request to its first token (queue wait excluded).",
                              buckets=TTFT_BUCKETS, registry=r)
        self.e2e = Histogram(f"{PREFIX}_e2e_request_latency_seconds",
                             "From a request being accepted to its last token (queue wait included).",
                             buckets=E2E_BUCKETS, registry=r)
        self.tpot = Histogram(f"{PREFIX}_time_per_output_token_seconds",
                              "Decode time per generated token after the first (1 / decode tokens per second).",
                              buckets=TPOT_BUCKETS, registry=r)
        self.queue_wait = Histogram(f"{PREFIX}_request_queue_time_seconds",
                                    "From a request being accepted to the engine starting it.",
                                    buckets=QUEUE_BUCKETS, registry=r)
        self.requests = Counter(f"{PREFIX}_requests", "Requests by how they ended: finished, cancelled, failed, "
                                "rejected.", ["outcome"], registry=r)
        self.rejections = Counter(f"{PREFIX}_request_rejections", "Requests refused by the runtime, by cause.",
                                  ["cause"], registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter(f"{PREFIX}_generation_tokens", "Tokens generated.", registry=r)
        self.breaker_transitions = Counter(f"{PREFIX}_breaker_transitions", "Breaker state changes, by the state "
                                           "entered.", ["to_state"], registry=r)
        self.http_responses = Counter(f"{PREFIX}_http_responses", "HTTP responses by route and status code.",
                                      ["route", "status"], registry=r)
        for outcome in OUTCOMES:  # present from the start: rate() needs a first sample
            self.requests.labels(outcome)
        for cause in REJECT_CAUSES:
            self.rejections.labels(cause)
        self._measurements: set[int | None] = set()  # request ids of accepted measurement runs
        r.register(_SnapshotCollector(client, connected_clients, draining))
        ProcessCollector(registry=r)

    def on_event(self, event: Event) -> None:
        """The runtime subscriber (dispatcher thread): quick, never blocks. An experiment's
        measurement runs count as requests and tokens but stay out of the histograms."""
        if isinstance(event, Accepted):
            if getattr(event, "measurement", False):
                self._measurements.add(event.request_id)
        elif isinstance(event, Finished):
            m = event.metrics
            self.requests.labels("finished").inc()
            self._count_tokens(event)
            if event.request_id in self._measurements:
                self._measurements.discard(event.request_id)
                return
            self.e2e.observe(m.e2e_ms / 1e3)
            self.queue_wait.observe(m.queue_wait_ms / 1e3)
            if m.ttft_ms is not None:
                self.ttft.observe(m.ttft_ms / 1e3)
            if m.decode_tok_s:
                self.tpot.observe(1 / m.decode_tok_s)
        elif isinstance(event, (Cancelled, Failed)):
            self.requests.labels(event.kind).inc()
            self._count_tokens(event)
            self._measurements.discard(event.request_id)
        elif isinstance(event, Rejected):
            self.requests.labels("rejected").inc()
            self.rejections.labels(event.cause).inc()
            self._measurements.discard(event.request_id)
        elif isinstance(event, BreakerTransition):
            self.breaker_transitions.labels(_value(event.to_state)).inc()

    def _count_tokens(self, event: Finished | Cancelled | Failed) -> None:
        m = event.metrics
        if m.ttft_ms is not None or m.generated_tokens:  # the prompt was processed
            self.prompt_tokens.inc(m.prompt_tokens or 0)
        self.generation_tokens.inc(m.generated_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _value(state: object) -> str:
    return str(getattr(state, "value", state))


class _SnapshotCollector(Collector):
    """Gauges read from the runtime's snapshots at scrape time."""

    def __init__(self, client: EngineClient, connected_clients: Callable[[], int], draining: Callable[[], bool]):
        self.client = client
        self.connected_clients = connected_clients
        self.draining = draining

    def describe(self) -> list[Metric]:
        return []  # collected live; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        c = self.client
        yield GaugeMetricFamily(f"{PREFIX}_requests_waiting", "Requests in the queue, waiting for the engine.",
                                value=c.queue_length())
        yield GaugeMetricFamily(f"{PREFIX}_requests_running", "Requests the engine is generating now.",
                                value=c.running_count())
        yield GaugeMetricFamily(f"{PREFIX}_http_clients_connected", "Open HTTP connections to the server.",
                                value=self.connected_clients())
        yield GaugeMetricFamily(f"{PREFIX}_server_draining", "1 while the server drains for shutdown (new "
                                "requests get 503).", value=1 if self.draining() else 0)

        breaker = c.breaker_view()
        states = GaugeMetricFamily(f"{PREFIX}_breaker_state", "The circuit breaker's state: 1 for the state it is "
                                   "in, 0 for the others.", labels=["state"])
        for state in BreakerState:
            states.add_metric([state.value], 1 if breaker.state is state else 0)
        yield states
        probe = breaker.seconds_until_probe
        yield GaugeMetricFamily(f"{PREFIX}_breaker_seconds_until_probe", "While OPEN: seconds until it lets a "
                                "probe through; 0 otherwise.", value=probe or 0)

        service = GaugeMetricFamily(f"{PREFIX}_service_state", "The engine service's state: 1 for the state it is "
                                    "in.", labels=["state"])
        current = _value(c.state)
        for name in ("not_started", "loading", "ready", "load_failed", "stopped"):
            service.add_metric([name], 1 if _state_name(current) == name else 0)
        yield service

        mode = c.mode()
        modes = GaugeMetricFamily(f"{PREFIX}_performance_mode", "The performance mode in effect (read back): 1 for "
                                  "it.", labels=["requested", "effective"])
        if mode is not None:
            modes.add_metric([mode.requested, mode.effective], 1)
        yield modes

        info = c.model_info()
        model = InfoMetricFamily(f"{PREFIX}_model", "The served model and backend.")
        if info is not None:
            model.add_metric([], {"model": info.name, "backend": info.backend, "architecture": info.architecture,
                                  "quantization": info.quantization or "", "context_length": str(info.context_length)})
        yield model


def _state_name(value: str) -> str:
    return "load_failed" if value in ("failed", "load_failed") else value
