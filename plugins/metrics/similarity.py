"""Built-in representational-similarity metrics (the paper's SVCCA analysis and CKA)."""

from __future__ import annotations

from transfusion_cli.api import (
    MetricSpec,
    MinibatchCKA,
    cca_from_moments,
    debiased_cka,
    debiased_cka_from_moments,
    hookimpl,
    linear_cka,
    linear_cka_from_moments,
    mean_cca,
    minibatch_cka,
    pwcca,
    pwcca_from_moments,
    svcca,
    svcca_from_moments,
)


@hookimpl
def tfx_register_metrics(register):
    register(MetricSpec(
        "cca", mean_cca,
        "mean canonical correlation over min(rank_x, rank_y) directions (rank-aware)",
        from_moments=cca_from_moments, needs_more_points_than_neurons=True,
        needs_row_norms=False))
    register(MetricSpec(
        "svcca", svcca,
        "SVCCA (Raghu et al. 2017): CCA on the top directions holding 99% of the variance (σ²)",
        from_moments=svcca_from_moments, needs_more_points_than_neurons=True,
        needs_row_norms=False))
    register(MetricSpec(
        "pwcca", pwcca,
        "PWCCA (Morcos et al. 2018, paper definition), weighted by the first model's neurons",
        from_moments=pwcca_from_moments, needs_more_points_than_neurons=True,
        needs_row_norms=False))
    register(MetricSpec(
        "cka", linear_cka, "linear CKA (Kornblith et al. 2019)",
        from_moments=linear_cka_from_moments, needs_row_norms=False))
    register(MetricSpec(
        "cka_debiased", debiased_cka, "debiased linear CKA (unbiased HSIC); ~0 for unrelated data",
        from_moments=debiased_cka_from_moments))
    register(MetricSpec(
        "cka_minibatch", minibatch_cka,
        "minibatch CKA (Nguyen et al. 2021) on per-input flattened features, unbiased HSIC "
        "summed over batches; memory independent of the number of inputs",
        accumulator=MinibatchCKA))
