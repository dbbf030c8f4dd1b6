"""Representational similarity (the paper's SVCCA analysis): CCA, SVCCA, PWCCA, linear,
debiased and minibatch CKA on (data points, neurons) matrices, exact and streamable.

Every function takes numpy arrays or torch tensors (CPU or CUDA) and computes in float64 on
the CPU. Activation capture from models lives in ``transfusion_cli.similarity.activations``
and the model-vs-model analysis in ``transfusion_cli.similarity.analysis`` (both use torch;
this package's top level needs only numpy).
"""

from transfusion_cli.similarity.cca import (
    DEFAULT_RANK_TOL,
    DEFAULT_VARIANCE,
    cca_coefficients,
    cca_from_moments,
    fit_cca,
    mean_cca,
    pwcca,
    pwcca_from_moments,
    svcca,
    svcca_from_moments,
)
from transfusion_cli.similarity.cka import (
    debiased_cka,
    debiased_cka_from_moments,
    hsic_unbiased,
    linear_cka,
    linear_cka_from_moments,
)
from transfusion_cli.similarity.minibatch_cka import (
    MinibatchCKA,
    MinibatchCKAMatrix,
    minibatch_cka,
)
from transfusion_cli.similarity.result import MetricResult, SimilarityError, SimilarityWarning
from transfusion_cli.similarity.streaming import Moments, PairStats, moments

__all__ = [
    "DEFAULT_RANK_TOL",
    "DEFAULT_VARIANCE",
    "MetricResult",
    "MinibatchCKA",
    "MinibatchCKAMatrix",
    "Moments",
    "PairStats",
    "SimilarityError",
    "SimilarityWarning",
    "cca_coefficients",
    "cca_from_moments",
    "debiased_cka",
    "debiased_cka_from_moments",
    "fit_cca",
    "hsic_unbiased",
    "linear_cka",
    "linear_cka_from_moments",
    "mean_cca",
    "minibatch_cka",
    "moments",
    "pwcca",
    "pwcca_from_moments",
    "svcca",
    "svcca_from_moments",
]
