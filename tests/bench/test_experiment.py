"""The experiment's design through a real EngineService over the deterministic fake."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import FakeBackend, wait_until

from antinet_tui.engine.protocol import GenerationRequest
from antinet_tui.runtime.breaker import BreakerConfig, BreakerState, CircuitBreaker
from antinet_tui.engine.errors import EngineError
from antinet_tui.runtime.client import EngineReserved, generate
from antinet_tui.runtime.events import Finished
from antinet_tui.runtime.experiment import Experiment, ExperimentPlan, PlanError, schedule
from antinet_tui.runtime.service import EngineService


def test_schedule_interleaves_and_alternates_the_order_per_pair():
    plan = ExperimentPlan(modes=("burst", "default"), token_counts=(8, 16), runs=2, warmup=1)
    runs = schedule(plan)
    assert [(r.token_count, r.pair, r.mode) for r in runs] == [
        (8, -1, "burst"), (8, -1, "default"), (8, 0, "default"), (8, 0, "burst"), (8, 1, "burst"), (8, 1, "default"),
        (16, -1, "burst"), (16, -1, "default"), (16, 0, "default"), (16, 0, "burst"), (16, 1, "burst"), (16, 1, "default"),
    ]
    # both runs of a pair use the same prompt
    for r in runs:
        partner = next(o for o in runs if (o.token_count, o.pair) == (r.token_count, r.pair) and o is not r)
        assert partner.prompt_index == r.prompt_index


def test_three_modes_rotate():
    plan = ExperimentPlan(modes=("a", "b", "c"), token_counts=(4,), runs=3, warmup=0)
    orders = [tuple(r.mode for r in schedule(plan)[i:i + 3]) for i in (0, 3, 6)]
    assert orders == [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")]


@pytest.mark.parametrize("plan,message", [
    (ExperimentPlan(("burst", "turbo"), (8,)), "unknown mode 'turbo'; valid modes: burst, default, power_saver"),
    (ExperimentPlan(("burst",), (8,)), "a comparison needs two modes"),
    (ExperimentPlan(("burst", "default"), (8,), runs=0), "runs must be at least 1"),
    (ExperimentPlan(("burst", "default"), (8, 0)), "token counts must be positive"),
    (ExperimentPlan(("burst", "burst"), (8,)), "a mode is listed twice"),
])
def test_bad_plans_are_refused_with_a_reason(plan, message):
    with pytest.raises(PlanError, match=message):
        plan.validate(("burst", "default", "power_saver"))


def test_a_single_mode_sweep_is_allowed_without_comparison():
    ExperimentPlan(("burst",), (8,), compare=False).validate(("burst", "default"))


def test_token_counts_beyond_the_context_are_refused():
    with pytest.raises(PlanError, match="500 tokens do not fit: the context holds 512 tokens and the longest "
                                        "prompt takes 20, leaving 492"):
        ExperimentPlan(("burst", "default"), (8, 500)).validate(("burst", "default"), 512, 20)


@pytest.fixture
def service():
    svc = EngineService(FakeBackend(token_delay_s=0.001), session_log=None).start()
    assert svc.wait_ready(5)
    yield svc
    svc.shutdown()


def test_runs_are_forced_to_the_token_count_and_read_back_their_mode(service):
    plan = ExperimentPlan(modes=("burst", "default"), token_counts=(3, 40), runs=2, warmup=1)
    seen = []
    report = Experiment(service, plan, on_run=lambda r, done, total: seen.append((done, total))).run()
    assert report.stopped is None
    assert len(report.results) == 12 and seen[-1] == (12, 12)
    for r in report.results:
        assert r.metrics.generated_tokens == r.run.token_count  # 40 > the reply's 14 words: cycled
        assert r.readback.requested == r.run.mode == r.metrics.mode
    assert len(report.measured) == 8
    assert service.mode().requested == "default"  # left as it was before the experiment


def test_comparison_and_tiers_from_a_fake_whose_burst_is_twice_as_fast():
    plan = ExperimentPlan(modes=("burst", "default"), token_counts=(20,), runs=6, warmup=0)  # t-interval: 6 pairs
    with EngineService(FakeBackend(token_delay_s=0.004), session_log=None) as service:  # burst halves delays
        assert service.wait_ready(5)
        report = Experiment(service, plan).run()
    (comparison,) = report.comparisons()
    assert 1.2 < comparison.e2e_speedup.ratio < 4  # 2 by design; sleeps overshoot on a busy machine
    assert comparison.verdict.startswith("burst is ") and "faster end-to-end" in comparison.verdict
    tiers = {t["mode"]: t for t in report.tiers()}
    assert tiers["burst"]["under_target"] and tiers["burst"]["under_slow_call"]
    assert tiers["burst"]["median_e2e_ms"] < tiers["default"]["median_e2e_ms"]


def test_abort_keeps_what_finished(service):
    plan = ExperimentPlan(modes=("burst", "default"), token_counts=(2,), runs=5, warmup=0)
    experiment = Experiment(service, plan, on_run=lambda r, done, total: experiment.abort() if done == 3 else None)
    report = experiment.run()
    assert len(report.results) == 3 and report.interrupted
    assert report.stopped == "stopped by the operator after 3 of 10 runs"


def test_abort_mid_run_cancels_the_run_in_flight():
    with EngineService(FakeBackend(token_delay_s=0.05), session_log=None) as service:
        assert service.wait_ready(5)
        plan = ExperimentPlan(modes=("burst", "default"), token_counts=(200,), runs=2, warmup=0)
        experiment = Experiment(service, plan)
        threading.Timer(0.3, experiment.abort).start()  # during the first 200-token run (~5 s)
        started = time.monotonic()
        report = experiment.run()
        assert time.monotonic() - started < 3
        assert report.results == [] and report.stopped == "stopped by the operator after 0 of 4 runs"


def test_an_experiment_does_not_start_while_an_operators_request_runs_and_leaves_it_alone():
    gate = threading.Event()
    backend = FakeBackend(start_gate=gate)
    with EngineService(backend, session_log=None) as service:
        assert service.wait_ready(5)
        mine = service.submit(GenerationRequest("mine", max_new_tokens=3))
        assert backend.started_requests.acquire(timeout=5)  # running, held at the gate
        experiment = Experiment(service, ExperimentPlan(("burst", "default"), (2,), runs=1, warmup=0))
        with pytest.raises(EngineError, match="requests are running: the engine can be reserved once they end"):
            experiment.run()
        gate.set()
        assert isinstance(mine.result(5), Finished) and backend.applied_modes == []


class ModeGateBackend(FakeBackend):
    """apply_mode waits for `gate` once it is closed: a mode switch that takes a while."""

    def __init__(self, **options):
        super().__init__(**options)
        self.gate = threading.Event()
        self.gate.set()

    def apply_mode(self, mode: str):
        self.gate.wait(10)
        return super().apply_mode(mode)


def test_abort_during_a_mode_switch_stops_at_once_and_restores_the_operators_mode():
    backend = ModeGateBackend()
    with EngineService(backend, session_log=None, initial_mode="default") as service:
        assert service.wait_ready(5)
        wait_until(lambda: backend.applied_modes == ["default"])
        backend.gate.clear()
        experiment = Experiment(service, ExperimentPlan(("burst", "default"), (2,), runs=1, warmup=0))
        threading.Timer(0.3, experiment.abort).start()  # while its first mode change is being applied
        report = experiment.run()
        assert report.interrupted and report.stopped == "stopped by the operator after 0 of 2 runs"
        backend.gate.set()
        wait_until(lambda: backend.applied_modes[-1:] == ["default"])  # the operator's mode, back in force
        assert service.mode().requested == "default"


def test_while_an_experiment_runs_others_can_neither_switch_modes_nor_send_requests():
    backend = FakeBackend(token_delay_s=0.01)
    with EngineService(backend, session_log=None) as service:
        assert service.wait_ready(5)
        refusals: list[str] = []

        def meddle(result, done, total) -> None:  # on the experiment's thread, between its runs
            try:
                service.set_mode("power_saver")
            except EngineReserved as exc:
                refusals.append(str(exc))
            rejected = service.submit(GenerationRequest("me too"), origin="127.0.0.1:5000").rejection
            refusals.append(f"{rejected.cause}: {rejected.reason}")

        report = Experiment(service, ExperimentPlan(("burst", "default"), (2,), runs=1, warmup=0), on_run=meddle).run()
        assert report.stopped is None and len(report.results) == 2
        assert refusals[:2] == ["the modes are reserved by the experiment until it ends; stop it first",
                                "reserved: the engine is reserved by the experiment until it ends"]
        assert "power_saver" not in backend.applied_modes
        assert isinstance(generate(service, GenerationRequest("after")), Finished)  # released at the end
        assert service.set_mode("power_saver").wait(5).readback.effective == "power_saver"


def test_the_operators_isolation_stops_the_experiment_with_its_reason(service):
    service.isolate_breaker()
    report = Experiment(service, ExperimentPlan(("burst", "default"), (2,), runs=1, warmup=0)).run()
    assert report.results == [] and "breaker isolated by the operator" in report.stopped


def test_runs_slower_than_the_breakers_threshold_neither_trip_it_nor_fill_the_latency_history():
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=2, slow_call_ms=1))
    with EngineService(FakeBackend(token_delay_s=0.002), session_log=None, breaker=breaker) as service:
        assert service.wait_ready(5)
        report = Experiment(service, ExperimentPlan(("burst", "default"), (4,), runs=3, warmup=1)).run()
        assert report.stopped is None and len(report.results) == 8
        assert all(r.metrics.e2e_ms > 1 for r in report.results)  # every run "slow"
        assert service.breaker_view().state is BreakerState.CLOSED and service.breaker_view().calls_in_window == 0
        assert service.metrics_summary().outcomes["finished"] == 0
