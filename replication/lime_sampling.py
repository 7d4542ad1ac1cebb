"""How LIME's perturbations are drawn: mask designs that estimate lime's coefficients with fewer
model evaluations (issue 28), and a registry of named estimators built on them.

The estimand. `lime` (and `explain.lime_batched` with kernel='lime') fits, for one image with F
segments, the weighted ridge regression of the model's class probability f(m) on mask rows m in
{0,1}^F drawn as i.i.d. fair coins (first row all ones), with weights w(m) = sqrt(exp(-d^2/width^2)),
d = 1 - sqrt(|m|/F) the cosine distance to the all-ones row. As the number of rows S grows, its
coefficients converge to the population fit

    beta* = argmin_{b0, beta} E_{m ~ Bernoulli(1/2)^F} [ w(m) (f(m) - b0 - m.beta)^2 ]

(the ridge penalty 1 and the one all-ones row fade as 1/S). The error of an S-row fit is, to first
order, G^{-1} (1/S) sum_i w_i (m_i - mean) r(m_i) with G the weighted Gram matrix and r = f - b0* -
m.beta* the population residual: the interactions of the model's segments that a linear surrogate
cannot express. Fair coins put every part of r into that sum at rate 1/S. Every design below keeps
each row marginally a fair-coin row (or, for `kernel`, moves the weight into the draw), so it
estimates the same beta*, and arranges the rows so that low-order parts of r cancel within the
sample instead of averaging out slowly.

Each design is a function (n_samples, n_features, seed) -> {0,1} array (S', F) with S' <= n_samples
rows (the model evaluations), first row all ones (the explained image, as in lime). An `Estimator`
pairs a design with the regression weights it needs; `explain` runs one over many images through
`explain.lime_batched`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb
from typing import Callable, Sequence

import numpy as np
import torch

from . import explain as _explain
from .explain import LimeResult, lime_masks, weighted_ridge

Design = Callable[[int, int, int], np.ndarray]


# ---- lime's kernel as a function of how many segments are on -------------------------------------

def lime_kernel(k: np.ndarray, n_features: int, width: float = 0.25) -> np.ndarray:
    """explain.lime_kernel on numpy counts: lime's weight of a row with k of n_features segments on."""
    return _explain.lime_kernel(torch.as_tensor(np.asarray(k, dtype=float)), float(n_features), width).numpy()


def kernel_k_distribution(n_features: int, width: float = 0.25) -> np.ndarray:
    """P(k on-segments) for k = 0..F when rows are drawn with probability proportional to lime's
    weight: Binomial(F, 1/2)(k) * w(k), normalised."""
    k = np.arange(n_features + 1)
    p = np.array([comb(n_features, int(i)) for i in k], dtype=float) * lime_kernel(k, n_features, width)
    return p / p.sum()


def mean_lime_weight(n_features: int, width: float = 0.25) -> float:
    """E[w(m)] over fair-coin rows m: lime's average weight of a random row."""
    k = np.arange(n_features + 1)
    binom = np.array([comb(n_features, int(i)) for i in k], dtype=float) / 2.0 ** n_features
    return float((binom * lime_kernel(k, n_features, width)).sum())


# ---- designs ---------------------------------------------------------------------------------------

def antithetic_masks(n_samples: int, n_features: int, seed: int) -> np.ndarray:
    """The all-ones row, then P = (n_samples - 1) // 2 fair-coin rows and their complements (2P + 1
    rows; one fewer than n_samples when n_samples is even).

    Estimates beta* (every row is marginally a fair-coin row; the weights are lime's). In +-1 coding
    x = 2m - 1 a pair is (x, -x): each main effect x_j changes sign within the pair while the
    intercept and every even-order interaction (x_a x_b, ...) do not, so their contributions to
    sum_i x_ij r(x_i) cancel pairwise (exactly with equal weights; lime's weights of a row and its
    complement differ, so partly). Only odd-order interactions (x_a x_b x_c, ...) are left: the
    variance falls by E[r_odd^2 + r_even^2] / (2 E[r_odd^2]), a gain when the model's two-segment
    interactions outweigh its three-segment ones.
    """
    pairs = max(0, (n_samples - 1) // 2)
    half = np.random.RandomState(seed).randint(0, 2, (pairs, n_features))
    return np.concatenate([np.ones((1, n_features), half.dtype), half, 1 - half])


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q ** 0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    """Q[i, j] = chi(j - i) over GF(q), q prime, chi the quadratic character (0 at 0)."""
    squares = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if a in squares else -1 for a in range(1, q)])
    idx = (np.arange(q)[None, :] - np.arange(q)[:, None]) % q
    return chi[idx]


def _paley1(q: int) -> np.ndarray:
    """Order q + 1 (q prime, q = 3 mod 4): H = I + [[0, 1'], [-1, Q]]."""
    n = q + 1
    s = np.zeros((n, n), dtype=np.int64)
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, _jacobsthal(q)
    return np.eye(n, dtype=np.int64) + s


def _paley2(q: int) -> np.ndarray:
    """Order 2(q + 1) (q prime, q = 1 mod 4): C = [[0, 1'], [1, Q]] with 0 -> [[1,-1],[-1,-1]] and
    +-1 -> +-[[1,1],[1,-1]]."""
    n = q + 1
    c = np.zeros((n, n), dtype=np.int64)
    c[0, 1:], c[1:, 0], c[1:, 1:] = 1, 1, _jacobsthal(q)
    return np.kron(c, np.array([[1, 1], [1, -1]])) + np.kron(np.eye(n, dtype=np.int64), np.array([[1, -1], [-1, -1]]))


def _core(m: int) -> Callable[[], np.ndarray] | None:
    """A construction of order m without a factor 2 taken out (Paley I or II), or None."""
    if m == 1:
        return lambda: np.ones((1, 1), dtype=np.int64)
    if _is_prime(m - 1) and (m - 1) % 4 == 3:
        return lambda: _paley1(m - 1)
    if m % 2 == 0 and _is_prime(m // 2 - 1) and (m // 2 - 1) % 4 == 1:
        return lambda: _paley2(m // 2 - 1)
    return None


@lru_cache(maxsize=None)
def hadamard(n: int) -> np.ndarray:
    """A Hadamard matrix of order n (H H' = n I), normalised so its first column is all ones, from
    Sylvester doubling of a Paley I or II core; ValueError when these constructions miss n."""
    m, doublings = n, 0
    while True:
        core = _core(m)
        if core is not None:
            h = core()
            for _ in range(doublings):
                h = np.block([[h, h], [h, -h]])
            h = h * h[:, :1]  # rows times their first entry: first column all ones
            h.setflags(write=False)
            return h
        if m % 2:
            raise ValueError(f"no Sylvester/Paley construction of a Hadamard matrix of order {n}")
        m, doublings = m // 2, doublings + 1


@lru_cache(maxsize=None)
def hadamard_order(n_samples: int, n_features: int) -> int:
    """The largest order n with a construction, 2n + 1 <= n_samples and n - 1 >= n_features."""
    for n in range((n_samples - 1) // 2, n_features, -1):
        if n in (1, 2) or n % 4 == 0:
            try:
                hadamard(n)
                return n
            except ValueError:
                continue
    raise ValueError(f"{n_samples} rows cannot hold an orthogonal foldover design for {n_features} features: "
                     f"it needs 2(n + 1) + 1 rows, n >= F, with a Hadamard matrix of order n + 1 ({2 * n_features + 3}+ rows)")


def orthogonal_masks(n_samples: int, n_features: int, seed: int) -> np.ndarray:
    """The all-ones row, then the foldover [D; -D] of a randomised two-level orthogonal array D:
    F of the n - 1 non-constant columns of a Hadamard matrix of order n (the largest constructible
    with 2n + 1 <= n_samples), chosen at random, each column's sign flipped by a fair coin, rows
    shuffled. 2n + 1 rows (249 of 250 for n = 124, Paley II with q = 61).

    Estimates beta*: the random sign flips make every row marginally uniform on {0,1}^F, so the
    weighted moments have lime's expectations. In +-1 coding the design is a resolution-IV
    orthogonal array: each column sums to 0 and is orthogonal to every other column (X'X = 2n I),
    and the foldover makes it orthogonal to every two-segment interaction. So a model that is
    linear plus pairwise interactions gives the unweighted fit's main effects without error, and
    the design's Gram matrix carries no sampling noise. What remains is the aliasing with
    three-segment and higher interactions, which the random columns and signs turn into a
    zero-mean error. (lime's weights are not constant, so the cancellations hold for the weighted
    fit approximately: its weights vary about 2x over typical rows.)
    """
    n = hadamard_order(n_samples, n_features)
    rng = np.random.RandomState(seed)
    cols = 1 + rng.permutation(n - 1)[:n_features]
    signs = rng.randint(0, 2, n_features) * 2 - 1
    d = hadamard(n)[rng.permutation(n)][:, cols] * signs
    x = np.concatenate([d, -d])
    return np.concatenate([np.ones((1, n_features), np.int64), (x + 1) // 2])


def kernel_masks(n_samples: int, n_features: int, seed: int, width: float = 0.25) -> np.ndarray:
    """The all-ones row, then n_samples - 1 rows drawn with probability proportional to lime's
    weight: k ~ Binomial(F, 1/2)(k) w(k) (normalised), then k segments on, chosen uniformly.

    Fitted with equal weights (c = E[w] on the drawn rows, lime's weight 1 on the all-ones row;
    `Estimator.weights`), it estimates beta*: E_q[(f - b0 - m.beta)^2] = E_p[w (...)^2] / E_p[w]
    for q = p w / E_p[w]. Importance sampling: lime's fair-coin draw spends rows on low-weight
    masks; drawing from the kernel instead changes the error's variance by the factor
    E_p[w] E_p[w r^2] / E_p[w^2 r^2] <= 1 (Cauchy-Schwarz, when r^2 does not grow with w) -- a small
    gain for lime's width 0.25, where fair-coin weights vary only about 2x.
    """
    rng = np.random.RandomState(seed)
    k = rng.choice(n_features + 1, size=max(0, n_samples - 1), p=kernel_k_distribution(n_features, width))
    ranks = rng.rand(len(k), n_features).argsort(1).argsort(1)
    return np.concatenate([np.ones((1, n_features), np.int64), (ranks < k[:, None]).astype(np.int64)])


# ---- estimators ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimator:
    """A mask design and the regression it needs.

    weighting 'lime': lime's kernel weight on each row (the rows are fair coins, marginally);
    'sampled': the kernel is in the draw, so the drawn rows get one weight, E[w] (the ridge penalty
    then bites as hard as in lime). anchor_weight multiplies the all-ones first row's weight (lime's
    1): 1 is lime's fit; 0 evaluates the explained image but leaves it out of the fit (as one fair
    coin draw among S it would weigh 2^-F), which removes a bias of order 1/S that lime's fixed first
    row adds to every coefficient: where masking any segment collapses the class probability, the
    first row is an outlier whose pull on beta at S = 250 is four times what it is at 1,000 and 40
    times what it is in a 10,000-sample reference. Both estimate beta* (S -> infinity)."""
    name: str
    design: Design
    weighting: str = "lime"
    anchor_weight: float = 1.0
    doc: str = ""

    def masks(self, n_samples: int, n_features: int, seed: int) -> np.ndarray:
        return self.design(n_samples, n_features, seed)

    def weights(self, masks: np.ndarray, n_features: int, width: float = 0.25) -> np.ndarray | None:
        """(S,) regression weights of the rows `masks` (S, n_features), or None: lime's kernel
        (lime_batched computes it)."""
        if self.weighting == "lime":
            if self.anchor_weight == 1.0:
                return None
            w = lime_kernel(np.asarray(masks)[:, :n_features].sum(1), n_features, width)
        elif self.weighting == "sampled":
            w = np.full(len(masks), mean_lime_weight(n_features, width))
            w[0] = 1.0  # the all-ones row, as lime weighs it
        else:
            raise ValueError(f"{self.name}: unknown weighting {self.weighting!r}")
        w[0] *= self.anchor_weight
        return w


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("lime", lime_masks, "lime", doc="lime's own draw: i.i.d. fair coins, first row all ones"),
    Estimator("antithetic", antithetic_masks, "lime", doc="fair-coin rows and their complements"),
    Estimator("orthogonal", orthogonal_masks, "lime", doc="foldover of a randomised Hadamard orthogonal array"),
    Estimator("kernel", kernel_masks, "sampled", doc="rows drawn in proportion to lime's kernel, fitted with equal weights"),
    Estimator("orthogonal-unanchored", orthogonal_masks, "lime", anchor_weight=0.0,
              doc="orthogonal, the explained image evaluated but left out of the fit"),
)}


def fit(estimator: str | Estimator, masks: np.ndarray, targets: np.ndarray, n_features: int | None = None,
        alpha: float = 1.0, width: float = 0.25) -> tuple[np.ndarray, float]:
    """The regression lime_batched runs after its forward passes, for one image's mask rows (S,F)
    and model outputs (S,): (beta (F,), intercept). For tests and toy models without images."""
    est = get(estimator)
    masks = np.asarray(masks)
    n_features = masks.shape[1] if n_features is None else n_features
    w = est.weights(masks, n_features, width)
    if w is None:
        w = lime_kernel(masks.sum(1), n_features, width)
    beta, b0 = weighted_ridge(torch.from_numpy(masks).double()[None], torch.as_tensor(targets).double()[None],
                              torch.from_numpy(w).double()[None], alpha)
    return beta[0].numpy(), float(b0[0])


def get(name: str | Estimator) -> Estimator:
    if isinstance(name, Estimator):
        return name
    if name not in ESTIMATORS:
        raise KeyError(f"Unknown LIME estimator {name!r}; known: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


def explain(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, segments: torch.Tensor, counts: torch.Tensor,
            estimator: str | Estimator, n_samples: int, seed: int | Sequence[int], chunk: int = 64,
            progress: bool = False, **kw) -> LimeResult:
    """Batched LIME over many images (as explain.lime) with `estimator`'s masks and weights.

    `seed` is one seed for every image (lime's convention: LimeImageExplainer(random_state=seed) per
    image) or one per image. kw go to lime_batched (hide_color, width, alpha, forward_batch); the
    'sampled' weighting is built on lime's kernel, so kernel must stay 'lime' there."""
    est = get(estimator)
    if est.weighting == "sampled" and kw.get("kernel", "lime") != "lime":
        raise ValueError(f"{est.name} draws rows from lime's kernel; kernel={kw['kernel']!r} does not apply")
    width = kw.get("width", 0.25)
    return _explain.lime(model, x, y, segments, counts, n_samples, seed, chunk=chunk, progress=progress,
                         design=est.masks, row_weights=lambda rows, k: est.weights(rows, k, width),
                         desc=f"LIME ({est.name})", **kw)
