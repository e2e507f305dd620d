"""Pure metric functions on NumPy arrays (no models, no TensorFlow).

* Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID, Eq. 6), with
  Tr((S_a S_b)^(1/2)) from symmetric eigendecompositions (or a nuclear norm when N < F) rather than `sqrtm`.
* Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets (Binkowski et al. 2018, Eq. 3; the subset protocol of clean-fid and
  torch-fidelity).
* Inception Score exp(E_x KL(p(y|x) || p(y))) over splits (Salimans et al. 2016, Sec. 4).
* Balanced accuracy, Pearson and Spearman correlation, coefficient of determination R^2.
* The best one-to-one code-to-class assignment (Hungarian, `scipy.optimize.linear_sum_assignment`).
* The mutual information gap between codes and factors (Chen et al. 2018, a disentanglement score).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import optimize, stats


def gaussian_stats(features) -> Tuple[np.ndarray, np.ndarray]:
    """(mean [F], covariance [F, F]) of features [N, F], in float64 (unbiased covariance, N - 1)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features of shape [N >= 2, F], got {x.shape}")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product(s_a, s_b) -> float:
    """Tr((S_a S_b)^(1/2)) for symmetric PSD S_a, S_b: S_a S_b has the eigenvalues of the symmetric PSD
    S_a^(1/2) S_b S_a^(1/2), so the trace is the sum of their square roots (two `eigh` instead of `sqrtm`)."""
    w, v = np.linalg.eigh(s_a)
    half = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = half @ s_b @ half
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None))))


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017, Eq. 6)."""
    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    s_a, s_b = np.atleast_2d(sigma_a).astype(np.float64), np.atleast_2d(sigma_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or s_a.shape != s_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape} vs {mu_b.shape}")
    diff = mu_a - mu_b
    return float(diff.dot(diff) + np.trace(s_a) + np.trace(s_b) - 2.0 * _trace_sqrt_product(s_a, s_b))


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F] (FID when F = Inception pool).

    With fewer samples than features, the sample covariances are S = X^T X for centred X / sqrt(N - 1), and
    Tr((S_a S_b)^(1/2)) is the nuclear norm of X_a X_b^T (same non-zero eigenvalues): exact and cheap.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or min(len(a), len(b)) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two feature sets [N >= 2, F] of one width, got {a.shape} and {b.shape}")
    if max(len(a), len(b)) > a.shape[1]:
        return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))
    xa = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    xb = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    nuclear = np.sum(np.linalg.svd(xa @ xb.T, compute_uv=False))
    return float(diff.dot(diff) + np.sum(xa * xa) + np.sum(xb * xb) - 2.0 * nuclear)


def polynomial_mmd2(x, y, degree: int = 3, gamma: float = None, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between samples x [m, d], y [n, d] with k(a, b) = (gamma a.b + coef0)^degree, gamma = 1/d
    (Binkowski et al. 2018, Eq. 3: diagonal terms left out of the within-set means)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (gamma * x.dot(x.T) + coef0) ** degree
    k_yy = (gamma * y.dot(y.T) + coef0) ** degree
    k_xy = (gamma * x.dot(y.T) + coef0) ** degree
    m, n = len(x), len(y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2.0 * k_xy.mean())


def kernel_inception_distance(features_a, features_b, num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
    """KID: mean and standard deviation of the unbiased polynomial MMD^2 over `num_subsets` random subsets of
    `subset_size` from each set (capped at the smaller set), drawn without replacement within a subset."""
    a, b = np.asarray(features_a), np.asarray(features_b)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    rng = np.random.RandomState(seed)
    values = [polynomial_mmd2(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


def inception_score(probs, splits: int = 10) -> Tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split of the class probabilities probs [N, K] (Salimans et al. 2016);
    returns the mean and standard deviation over the splits (the TF-GAN / torch-fidelity convention, 10 splits)."""
    p = np.asarray(probs, np.float64)
    splits = max(1, min(splits, len(p)))
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(0, keepdims=True)
        kl = np.sum(part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None))), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def balanced_accuracy(y_true, y_pred) -> float:
    """(TPR + TNR) / 2 for 0/1 labels and predictions; a class absent from y_true is left out of the mean."""
    y_true, y_pred = np.asarray(y_true).astype(bool).ravel(), np.asarray(y_pred).astype(bool).ravel()
    rates = [np.mean(y_pred[y_true == v] == v) for v in (False, True) if np.any(y_true == v)]
    return float(np.mean(rates)) if rates else float("nan")


def pearson(x, y) -> float:
    """Pearson's correlation coefficient; NaN when either side is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x, y) -> float:
    """Spearman's rank correlation (Pearson on average ranks); NaN when either side is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return pearson(stats.rankdata(x), stats.rankdata(y))


def r_squared(y_true, y_pred) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (can be negative: worse than predicting the mean)."""
    y_true, y_pred = np.asarray(y_true, np.float64).ravel(), np.asarray(y_pred, np.float64).ravel()
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / ss_tot)


def hungarian_mapping(code_values, predicted_classes, num_codes: int, num_classes: int):
    """Best one-to-one assignment of code values to classes (maximises agreement).

    Returns (mapping: array code value -> class, mapped accuracy, confusion [codes, classes]).
    """
    code_values = np.asarray(code_values, np.int64)
    predicted_classes = np.asarray(predicted_classes, np.int64)
    confusion = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(confusion, (code_values, predicted_classes), 1)
    rows, cols = optimize.linear_sum_assignment(-confusion)
    mapping = np.full(num_codes, -1, np.int64)
    mapping[rows] = cols
    return mapping, float(confusion[rows, cols].sum()) / max(len(code_values), 1), confusion


def _discretise(v: np.ndarray, bins: int) -> np.ndarray:
    v = np.asarray(v, np.float64)
    if np.issubdtype(np.asarray(v).dtype, np.integer) or len(np.unique(v)) <= bins:
        return np.unique(v, return_inverse=True)[1]
    edges = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    return np.digitize(v, edges)


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _entropy(a: np.ndarray) -> float:
    p = np.bincount(a) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information_gap(codes: Dict[str, np.ndarray], factors: Dict[str, np.ndarray],
                           bins: int = 20) -> Dict[str, object]:
    """MIG (Chen et al. 2018): per factor, the gap between the two codes that share the most information with
    it, divided by its entropy; the score is the mean over factors. Inputs: name -> [N] values (continuous
    ones are discretised into `bins` quantile bins)."""
    c = {k: _discretise(v, bins) for k, v in codes.items()}
    f = {k: _discretise(v, bins) for k, v in factors.items()}
    per_factor, matrix = {}, {}
    for fk, fv in f.items():
        mi = sorted(((_mutual_information(cv, fv), ck) for ck, cv in c.items()), reverse=True)
        matrix[fk] = {ck: m for m, ck in mi}
        h = _entropy(fv)
        gap = (mi[0][0] - (mi[1][0] if len(mi) > 1 else 0.0)) / h if h > 0 else 0.0
        per_factor[fk] = {"gap": gap, "best_code": mi[0][1]}
    return {"mig": float(np.mean([v["gap"] for v in per_factor.values()])), "per_factor": per_factor,
            "mutual_information": matrix}
