"""Speed and memory of tfx's SVCCA / PWCCA / minibatch CKA against a plain NumPy reference.

The reference follows the public reference code (google/svcca `cca_core` and its SVCCA
tutorial): `np.cov` of the stacked activations, inverse square roots as `eigh` of a `pinv`,
an SVD of the whitened cross-covariance, data SVDs for the SVCCA reduction, and for PWCCA the
canonical variates projected in sample space (the paper's definition, so both compute the
same number). tfx computes everything from one pass of float64 moments, with no data SVD and
no pinv. Prints one JSON object; the ratios are measured in the same run.

    python benchmarks/similarity_speed.py [--repeats 3] [--sizes 5000,20000] [--width 512]
        [--cka-n 50000] [--cka-width 2048] [--cka-batch 500] [--skip-exact]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from transfusion_cli.similarity import (
    MinibatchCKA,
    PairStats,
    debiased_cka_from_moments,
    moments,
    pwcca_from_moments,
    svcca,
    svcca_from_moments,
)
from transfusion_cli.similarity import pwcca as tfx_pwcca


# ------------------------------------------------------------------ reference (google style)
def _positivedef_matrix_sqrt(array):
    w, v = np.linalg.eigh(array)
    return v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.conj().T


def ref_cca(acts1, acts2):
    """google/svcca get_cca_similarity (epsilon 0, no neuron removal) on neurons x points."""
    p = acts1.shape[0]
    covariance = np.cov(np.concatenate([acts1, acts2], axis=0))
    sxx, sxy, syy = covariance[:p, :p], covariance[:p, p:], covariance[p:, p:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    inv_xx = _positivedef_matrix_sqrt(np.linalg.pinv(sxx))
    inv_yy = _positivedef_matrix_sqrt(np.linalg.pinv(syy))
    u, s, _ = np.linalg.svd(inv_xx @ sxy @ inv_yy)
    return np.abs(s), u, inv_xx


def ref_svcca(acts1, acts2, keep=0.99):
    """The SVCCA tutorial: SVD of each centred data matrix, top directions (σ² rule), CCA."""
    reduced = []
    for acts in (acts1, acts2):
        centred = acts - acts.mean(axis=1, keepdims=True)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        k = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= keep)) + 1
        reduced.append(s[:k, None] * vt[:k])
    return float(np.mean(ref_cca(*reduced)[0]))


def ref_pwcca(acts1, acts2):
    """PWCCA (paper definition) the way google's compute_pwcca computes: directions of acts1
    in sample space, orthonormalised with np.linalg.qr, weights Σ_j |<h_i, x_j>| over acts1's
    centred neurons. Using the canonical variates as the directions (they are already
    orthogonal, so the QR only normalises them) gives the paper's value, equal to tfx's."""
    rho, u, inv_xx = ref_cca(acts1, acts2)
    r = rho.shape[0]
    centred = acts1 - acts1.mean(axis=1, keepdims=True)
    directions = (inv_xx @ u[:, :r]).T @ centred  # r x n canonical variates
    q, _ = np.linalg.qr(directions.T)
    alpha = np.abs(q.T @ centred.T).sum(axis=1)
    return float(np.sum(alpha / alpha.sum() * rho))


# ------------------------------------------------------------------ inputs and timing
def make_pair(n, p, q, seed):
    """similarity.md §5.1 "shared_relu": a shared latent, ReLU, non-zero means."""
    rng = np.random.default_rng(seed)
    k = min(p, q) // 4
    z = rng.standard_normal((n, k))
    a, b = rng.standard_normal((k, p)), rng.standard_normal((k, q))
    x = np.maximum(z @ a + rng.standard_normal((n, p)), 0.0)
    y = np.maximum(z @ b + rng.standard_normal((n, q)), 0.0)
    return x, y


def timed(fn, repeats):
    """(fastest of `repeats` runs in seconds, last result). The minimum, not the median: on a
    shared machine other processes only ever add time."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (reset by exec, unlike ru_maxrss, which
    Linux carries over from the parent process)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def tfx_both(x, y):
    """SVCCA and PWCCA from one moment pass."""
    m = moments(x, y)
    return svcca_from_moments(m).value, pwcca_from_moments(m).value


def bench_pair(n, p, repeats):
    x, y = make_pair(n, p, p, seed=n)
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)  # reference layout
    out = {"n": n, "p": p, "q": p}
    for name, mine, ref in (("svcca", lambda: svcca(x, y), lambda: ref_svcca(xt, yt)),
                            ("pwcca", lambda: tfx_pwcca(x, y), lambda: ref_pwcca(xt, yt))):
        t_ref, v_ref = timed(ref, repeats)
        t_tfx, v_tfx = timed(mine, repeats)
        out[name] = {"reference_s": round(t_ref, 4), "tfx_s": round(t_tfx, 4),
                     "speedup": round(t_ref / t_tfx, 2), "reference_value": v_ref,
                     "tfx_value": v_tfx, "abs_diff": abs(v_ref - v_tfx)}
    t_ref = out["svcca"]["reference_s"] + out["pwcca"]["reference_s"]
    t_both, _ = timed(lambda: tfx_both(x, y), repeats)
    out["svcca_and_pwcca_one_pass"] = {"reference_s": round(t_ref, 4),
                                       "tfx_s": round(t_both, 4),
                                       "speedup": round(t_ref / t_both, 2)}
    t_cov, _ = timed(lambda: np.cov(np.concatenate([xt, yt])), repeats)
    out["floor_np_cov_s"] = round(t_cov, 4)
    return out


def bench_minibatch_cka(n, width, batch, exact):
    """Minibatch CKA over n inputs generated batch by batch (never all in memory)."""
    rng = np.random.default_rng(0)
    k = 64
    a, b = rng.standard_normal((k, width)), rng.standard_normal((k, width))
    tracemalloc.start()
    start = time.perf_counter()
    acc, stats = MinibatchCKA(), PairStats(debiased=True) if exact else None
    for _ in range(0, n, batch):
        z = rng.standard_normal((batch, k))
        x = np.maximum(z @ a + rng.standard_normal((batch, width)), 0.0)
        y = np.maximum(z @ b + 2.0 * rng.standard_normal((batch, width)), 0.0)
        acc.update(x, y)
        if stats is not None:
            stats.update(x, y)
    minibatch_s = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {"n": n, "width": width, "batch": batch, "value": acc.value(),
              "wall_s": round(minibatch_s, 2),
              "peak_traced_mb": round(peak / 2**20, 1),
              # Whole process (interpreter and numpy included), measured in a fresh process.
              "peak_rss_mb": peak_rss_mb(),
              "inputs_in_memory_would_be_mb": round(2 * n * width * 8 / 2**20, 1)}
    if stats is not None:
        result["exact_debiased_cka_streamed"] = debiased_cka_from_moments(stats.finalize()).value
        result["note"] = ("peak and wall time include the exact streamed moments "
                          "((2 x width)² float64) computed alongside for comparison")
    return result


def isolated_minibatch_cka(args, exact: bool) -> dict:
    """Run the minibatch CKA measurement in a fresh process, so that its max RSS is its own."""
    command = [sys.executable, __file__, "--cka-only", "--cka-n", str(args.cka_n),
               "--cka-width", str(args.cka_width), "--cka-batch", str(args.cka_batch)]
    if not exact:
        command.append("--skip-exact")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--cka-n", type=int, default=50_000)
    parser.add_argument("--cka-width", type=int, default=2048)
    parser.add_argument("--cka-batch", type=int, default=500)
    parser.add_argument("--skip-exact", action="store_true",
                        help="do not also stream the exact debiased CKA (faster, less memory)")
    parser.add_argument("--cka-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cka_only:  # the child process of isolated_minibatch_cka
        print(json.dumps(bench_minibatch_cka(args.cka_n, args.cka_width, args.cka_batch,
                                             exact=not args.skip_exact)))
        return
    report = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "processor": platform.machine(), "cpus": os.cpu_count(),
                          "load_average_1min": round(os.getloadavg()[0], 2)},
              "pairs": [bench_pair(int(n), args.width, args.repeats)
                        for n in args.sizes.split(",")]}
    # Minibatch CKA alone, then (optionally) with the exact streamed moments beside it.
    report["minibatch_cka"] = isolated_minibatch_cka(args, exact=False)
    if not args.skip_exact:
        report["minibatch_cka_vs_exact"] = isolated_minibatch_cka(args, exact=True)
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
