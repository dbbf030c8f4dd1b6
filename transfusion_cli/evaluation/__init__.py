"""Judging a classifier. numpy / scipy / scikit-learn only: ``scores`` (task metrics from
logits), ``bootstrap`` (patient-level CIs, paired AUC difference), ``delong``,
``operating_point``, ``calibration``, ``plots``. With torch: ``evaluate`` (`tfx evaluate`) and
``explain`` (`tfx explain`, needs the ``explain`` extra)."""
