"""Pure metric functions against hand-computed values (no models)."""

import numpy as np
import pytest
from scipy import linalg

from tf_ssinfogan.evaluation import metrics


def test_frechet_formula_on_a_hand_computed_pair_of_gaussians():
    # N((0, 0), diag(1, 4)) vs N((1, 2), diag(4, 9)): ||d||^2 = 5, Tr = 1 + 4 + 4 + 9 - 2 (2 + 6) = 2
    assert metrics.frechet_distance_from_stats([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0])) == \
        pytest.approx(7.0, abs=1e-12)
    # rotated (non-diagonal, commuting) covariances: R diag(1, 4) R^T vs R diag(9, 16) R^T, equal means:
    # Tr = 1 + 4 + 9 + 16 - 2 (3 + 8) = 8
    r = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    s_a, s_b = r @ np.diag([1.0, 4.0]) @ r.T, r @ np.diag([9.0, 16.0]) @ r.T
    assert metrics.frechet_distance_from_stats([1, 1], s_a, [1, 1], s_b) == pytest.approx(8.0, abs=1e-10)
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2
    assert metrics.frechet_distance_from_stats([3.0], [[4.0]], [1.0], [[25.0]]) == pytest.approx(4.0 + 9.0)


@pytest.mark.parametrize("n_a, n_b, dim", [(300, 310, 8), (20, 25, 50)])  # the covariance path; the low-rank path
def test_frechet_distance_of_samples_matches_scipy_sqrtm(n_a, n_b, dim):
    rng = np.random.RandomState(0)
    a = rng.randn(n_a, dim) @ rng.randn(dim, dim)
    b = 2.0 * rng.randn(n_b, dim) + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(linalg.sqrtm(s_a @ s_b)))
    assert metrics.frechet_distance(a, b) == pytest.approx(want, rel=1e-7)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8 * want)


def test_kid_is_zero_in_expectation_and_matches_a_direct_mmd():
    rng = np.random.RandomState(0)
    a, b = rng.randn(400, 16), rng.randn(400, 16)
    mean, std = metrics.kernel_inception_distance(a, b, num_subsets=20, subset_size=200)
    assert abs(mean) < 3 * std + 1e-3  # one distribution: unbiased MMD^2 about 0 (it can be negative)
    far, _ = metrics.kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=200)
    assert far > 100 * abs(mean)
    # direct: k(x, y) = (x.y / d + 1)^3, unbiased within-set means
    x, y = a[:5], b[:7]
    k = lambda p, q: (p @ q / 16 + 1) ** 3  # noqa: E731
    kxx = np.mean([k(x[i], x[j]) for i in range(5) for j in range(5) if i != j])
    kyy = np.mean([k(y[i], y[j]) for i in range(7) for j in range(7) if i != j])
    kxy = np.mean([k(x[i], y[j]) for i in range(5) for j in range(7)])
    assert metrics.polynomial_mmd2(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_inception_score_known_values():
    k = 10
    confident = np.eye(k)[np.arange(1000) % k]  # certain predictions spread evenly over k classes: IS = k
    assert metrics.inception_score(confident, splits=10)[0] == pytest.approx(k, rel=1e-6)
    assert metrics.inception_score(np.full((100, k), 1.0 / k), splits=5) == pytest.approx((1.0, 0.0))
    one_class = np.eye(k)[np.zeros(100, int)]  # certain but all one class: IS = 1
    assert metrics.inception_score(one_class, splits=4)[0] == pytest.approx(1.0, abs=1e-6)


def test_balanced_accuracy_correlations_and_r2():
    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])  # TNR 3/4, TPR 1/2
    assert metrics.balanced_accuracy(y, pred) == pytest.approx(0.625)
    assert metrics.balanced_accuracy(np.zeros(4), np.array([0, 1, 0, 0])) == pytest.approx(0.75)  # one class
    x = np.linspace(-1, 1, 21)
    assert metrics.pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert metrics.spearman(x, x ** 3) == pytest.approx(1.0) and metrics.pearson(x, x ** 3) < 0.95
    assert metrics.spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    assert np.isnan(metrics.pearson(x, np.ones_like(x)))
    assert metrics.r_squared(x, x) == 1.0
    assert metrics.r_squared(x, np.zeros_like(x)) == pytest.approx(0.0)  # the mean predictor
    assert metrics.r_squared([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(0.5)  # 1 - 1 / 2
