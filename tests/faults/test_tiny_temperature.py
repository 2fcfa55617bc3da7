"""A temperature so small that logits / temperature overflows behaves as greedy: never a
NaN, never numpy's overflow warning (case 9)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from antinet_tui.engine.sampling import Sampler


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-300, 1e-30])
def test_a_tiny_temperature_samples_the_best_token(temperature):
    logits = np.random.default_rng(0).normal(0, 5, 500).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning would fail here
        picks = {Sampler(temperature, 40, 0.95, seed)(logits) for seed in range(5)}
    assert picks == {int(np.argmax(logits))}


def test_run_with_a_tiny_temperature_answers_as_greedy(tiny_model):
    def run(temperature: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "antinet_tui", "run", "hello", "--model", str(tiny_model),
                               "--max-new-tokens", "6", "--temperature", temperature, "--json", "--no-log"],
                              capture_output=True, text=True)

    tiny, greedy = run("1e-320"), run("0")
    assert tiny.returncode == 0 and "Warning" not in tiny.stderr, tiny.stderr
    assert json.loads(tiny.stdout)["token_ids"] == json.loads(greedy.stdout)["token_ids"]
