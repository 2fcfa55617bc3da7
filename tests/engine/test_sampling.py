import numpy as np

from antinet_tui.engine.sampling import Sampler

LOGITS = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 3


def draws(sampler, n=200):
    return [sampler(LOGITS) for _ in range(n)]


def test_temperature_zero_is_greedy():
    assert draws(Sampler(0.0, 40, 0.95, seed=1), 5) == [int(np.argmax(LOGITS))] * 5


def test_same_seed_same_draws_different_seed_different_draws():
    assert draws(Sampler(1.0, 0, 1.0, seed=7)) == draws(Sampler(1.0, 0, 1.0, seed=7))
    assert draws(Sampler(1.0, 0, 1.0, seed=7)) != draws(Sampler(1.0, 0, 1.0, seed=8))


def test_top_k_limits_the_candidates():
    top5 = set(np.argsort(LOGITS)[-5:].tolist())
    assert set(draws(Sampler(5.0, 5, 1.0, seed=3))) <= top5
    assert set(draws(Sampler(5.0, 1, 1.0, seed=3), 20)) == {int(np.argmax(LOGITS))}


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float64)).astype(np.float32)
    seen = {Sampler(1.0, 0, 0.8, seed=s)(logits) for s in range(200)}
    assert seen == {0, 1}  # 0.5 + 0.3 reaches 0.8; tokens 2 and 3 are cut
    assert {Sampler(1.0, 0, 0.01, seed=s)(logits) for s in range(50)} == {0}


def test_sampling_follows_the_distribution():
    logits = np.log(np.array([0.7, 0.2, 0.1])).astype(np.float32)
    sampler = Sampler(1.0, 0, 1.0, seed=11)
    counts = np.bincount([sampler(logits) for _ in range(4000)], minlength=3) / 4000
    np.testing.assert_allclose(counts, [0.7, 0.2, 0.1], atol=0.03)
