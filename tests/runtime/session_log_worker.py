"""Run by test_session_log.py in a subprocess that the test kills with SIGKILL.

Streams requests through an EngineService over a fake backend, logging to argv[1], and
prints "finished <id>" for each request a subscriber saw finish (after the dispatcher
wrote its record), forever.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for fakes.py

from fakes import FakeBackend  # noqa: E402

from antinet_tui.engine.protocol import GenerationRequest  # noqa: E402
from antinet_tui.runtime.client import generate  # noqa: E402
from antinet_tui.runtime.events import Finished  # noqa: E402
from antinet_tui.runtime.service import EngineService  # noqa: E402
from antinet_tui.runtime.session_log import SessionLog  # noqa: E402


def report(event) -> None:
    if isinstance(event, Finished):
        print(f"finished {event.request_id}", flush=True)


service = EngineService(FakeBackend(token_delay_s=0.001), session_log=SessionLog(sys.argv[1]))
service.subscribe(report)
service.start()
request_id = 0
while True:
    request_id += 1  # the service numbers requests 1, 2, ... in this process
    generate(service, GenerationRequest(f"prompt {request_id}: ünïcode ✓", max_new_tokens=12, ignore_eos=True))
