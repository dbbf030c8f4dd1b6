"""Exact one-pass moments of a pair of activation matrices (``PairStats``), streamed over batches.

Every linear-family metric (CCA, SVCCA, PWCCA, linear and debiased CKA) is a function of the
centred scatter matrices Sxx = XcᵀXc, Syy, Sxy and, for debiased CKA, a few sums of centred
row norms. ``PairStats`` accumulates them in float64 around a fixed shift (the mean of the
first batch), which keeps post-ReLU activations with large means free of cancellation; the
result equals the in-memory computation to rounding, with memory (p + q)² · 8 bytes whatever
the number of data points. Batches may be numpy arrays or torch tensors (accumulated on the
tensor's device, e.g. CUDA, in float64; finalised on the CPU).

``products="float32"`` computes each batch's products in float32 (several times faster on GPUs
whose float64 is slow) and still sums batches in float64; its error against float64 is
measured by ``benchmarks/similarity_device.py`` and tests/similarity/test_similarity_device.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transfusion_cli.similarity.arrays import check_pair, is_torch, to_numpy64
from transfusion_cli.similarity.result import SimilarityError


@dataclass
class Moments:
    """Centred statistics of n paired data points: X (n, p) and Y (n, q)."""

    n: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    sxx: np.ndarray  # XcᵀXc (p, p)
    syy: np.ndarray  # YcᵀYc (q, q)
    sxy: np.ndarray  # XcᵀYc (p, q)
    # For debiased CKA (None when not tracked): with a_i = |xc_i|², b_i = |yc_i|²:
    sum_aa: float | None = None  # Σ a_i²
    sum_bb: float | None = None  # Σ b_i²
    sum_ab: float | None = None  # Σ a_i b_i

    @property
    def p(self) -> int:
        """Neurons (columns) of X."""
        return self.sxx.shape[0]

    @property
    def q(self) -> int:
        """Neurons (columns) of Y."""
        return self.syy.shape[0]

    @property
    def has_debiased(self) -> bool:
        """Whether the row-norm sums for debiased CKA were accumulated."""
        return self.sum_ab is not None


PRODUCT_PRECISIONS = ("float64", "float32")


def _as_batch(value: Any, name: str, backend: str | None, products: str = "float64"
              ) -> tuple[Any, str]:
    """A float64 (or ``products``) 2-D batch, kept on its torch device or as numpy, and its
    backend name."""
    if is_torch(value):
        import torch

        if value.ndim != 2:
            raise SimilarityError(f"{name} batch has shape {tuple(value.shape)}; expected 2-D "
                                  "(data points, neurons).")
        batch, kind = value.detach().to(getattr(torch, products)), "torch"
    else:
        batch, kind = to_numpy64(value, name), "numpy"
        if products == "float32":
            batch = batch.astype(np.float32)
    if backend is not None and kind != backend:
        raise SimilarityError(f"{name} batch is {kind} but earlier batches were {backend}; "
                              "feed one kind throughout.")
    return batch, kind


def _to_numpy(value: Any) -> np.ndarray:
    if is_torch(value):
        return value.detach().cpu().numpy().astype(np.float64, copy=False)
    return np.asarray(value, dtype=np.float64)


def _scalar(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


class PairStats:
    """Streaming exact moments of (X, Y); ``update`` per batch, then ``finalize()``.

    ``debiased``: also accumulate the row-norm sums debiased CKA needs (cheap: O(n(p+q))).
    ``null_seed``: also accumulate a null cross-scatter with Y's rows permuted within each
    batch (seeded), for an "unpaired" baseline: ``finalize(null=True)``.
    ``products``: precision of each batch's products, float64 (exact to rounding) or float32
    (summed across batches in float64; see the module docstring).
    """

    def __init__(self, debiased: bool = True, null_seed: int | None = None,
                 products: str = "float64"):
        if products not in PRODUCT_PRECISIONS:
            raise SimilarityError(f"products={products!r} is not one of "
                                  f"{', '.join(PRODUCT_PRECISIONS)}.")
        self.debiased = debiased
        self.products = products
        self.null_seed = null_seed
        self._rng = np.random.default_rng(null_seed) if null_seed is not None else None
        self.n = 0
        self.batches = 0
        self._backend: str | None = None
        self._acc: dict[str, Any] = {}

    def update(self, x: Any, y: Any) -> None:
        """Add one batch of paired rows: x (m, p), y (m, q)."""
        x, backend = _as_batch(x, "x", self._backend, self.products)
        y, _ = _as_batch(y, "y", backend, self.products)
        if x.shape[0] != y.shape[0]:
            raise SimilarityError(f"x batch has {x.shape[0]} rows but y batch has {y.shape[0]}.")
        if x.shape[0] == 0:
            return
        if self.n == 0:
            self._backend = backend
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
        elif (x.shape[1], y.shape[1]) != (self.p, self.q):
            raise SimilarityError(f"batch has {x.shape[1]} and {y.shape[1]} neurons; earlier "
                                  f"batches had {self.p} and {self.q}.")
        # One product of [u v] with itself gives uᵀu, vᵀv and uᵀv; numpy runs it as a single
        # symmetric rank-k update (half the work of three separate products, measured 2x).
        cat = np.concatenate if backend == "numpy" else _torch_cat
        joint = cat((x, y), 1)
        joint -= cat((self.shift_x, self.shift_y), 0)
        p = x.shape[1]
        u, v = joint[:, :p], joint[:, p:]
        terms = {"su": u.sum(0), "sv": v.sum(0), "sww": joint.T @ joint}
        if self.debiased:
            a, b = (u * u).sum(1), (v * v).sum(1)
            terms.update(sa=a.sum(), sb=b.sum(), saa=(a * a).sum(), sbb=(b * b).sum(),
                         sab=(a * b).sum(), sau=u.T @ a, sbu=u.T @ b, sav=v.T @ a, sbv=v.T @ b)
        if self._rng is not None:
            perm = self._rng.permutation(u.shape[0])
            if backend == "torch":
                import torch

                perm = torch.as_tensor(perm, device=v.device)
            terms["suv_null"] = u.T @ v[perm]
        for key, value in terms.items():
            value = _float64(value)
            if key in self._acc:
                self._acc[key] += value
            else:
                self._acc[key] = value
        self.n += u.shape[0]
        self.batches += 1

    @property
    def p(self) -> int:
        """Neurons of X (after the first batch)."""
        return int(self._acc["su"].shape[0])

    @property
    def q(self) -> int:
        """Neurons of Y (after the first batch)."""
        return int(self._acc["sv"].shape[0])

    def nbytes(self) -> int:
        """Memory held by the accumulators."""
        return sum(int(getattr(v, "nbytes", 8)) if not is_torch(v)
                   else v.numel() * v.element_size() for v in self._acc.values())

    def finalize(self, null: bool = False) -> Moments:
        """The exact centred moments of everything seen (``null``: the permuted baseline)."""
        if self.n < 2:
            raise SimilarityError(f"{self.n} data point(s) seen; similarity needs at least 2.")
        if null and "suv_null" not in self._acc:
            raise SimilarityError("No null baseline was accumulated; create PairStats with "
                                  "null_seed=... to get one.")
        acc = {k: _to_numpy(v) for k, v in self._acc.items()}
        p, n = self.p, self.n
        sww = acc.pop("sww")
        acc.update(suu=sww[:p, :p], svv=sww[p:, p:], suv=sww[:p, p:])
        mx, my = acc["su"] / n, acc["sv"] / n
        sxx = acc["suu"] - n * np.outer(mx, mx)
        syy = acc["svv"] - n * np.outer(my, my)
        sxy = acc["suv_null" if null else "suv"] - n * np.outer(mx, my)
        moments = Moments(n, _to_numpy(self.shift_x) + mx, _to_numpy(self.shift_y) + my,
                          (sxx + sxx.T) / 2, (syy + syy.T) / 2, sxy)
        if self.debiased and not null:
            cx, cy = float(mx @ mx), float(my @ my)
            sa, sb = _scalar(acc["sa"]), _scalar(acc["sb"])
            su, sv = acc["su"], acc["sv"]
            moments.sum_aa = (_scalar(acc["saa"]) - 4 * mx @ acc["sau"] + 2 * cx * sa
                              + 4 * mx @ acc["suu"] @ mx - 4 * cx * (mx @ su) + n * cx * cx)
            moments.sum_bb = (_scalar(acc["sbb"]) - 4 * my @ acc["sbv"] + 2 * cy * sb
                              + 4 * my @ acc["svv"] @ my - 4 * cy * (my @ sv) + n * cy * cy)
            moments.sum_ab = (_scalar(acc["sab"]) - 2 * my @ acc["sav"] + cy * sa
                              - 2 * mx @ acc["sbu"] + 4 * mx @ acc["suv"] @ my
                              - 2 * cy * (mx @ su) + cx * sb - 2 * cx * (my @ sv) + n * cx * cy)
            moments.sum_aa, moments.sum_bb, moments.sum_ab = (
                float(moments.sum_aa), float(moments.sum_bb), float(moments.sum_ab))
        return moments


def _float64(value: Any) -> Any:
    """A batch term in float64 on its device (a no-op for float64 products)."""
    if is_torch(value):
        import torch

        return value.to(torch.float64)
    return np.asarray(value, dtype=np.float64)


def _torch_cat(tensors: tuple[Any, Any], dim: int) -> Any:
    import torch

    return torch.cat(tensors, dim)


def moments(x: Any, y: Any, debiased: bool = False) -> Moments:
    """The exact centred moments of two in-memory matrices (n, p) and (n, q)."""
    x, y = to_numpy64(x, "x"), to_numpy64(y, "y")
    check_pair(x, y)
    stats = PairStats(debiased=debiased)
    stats.update(x, y)
    return stats.finalize()
