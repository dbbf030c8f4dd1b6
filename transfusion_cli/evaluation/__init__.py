"""Judging a classifier. numpy / scipy / scikit-learn only: ``bootstrap`` (patient-level CIs,
paired AUC difference), ``delong``, ``paired`` (paired per-seed statistics of two arms),
``operating_point``, ``calibration``, ``plots``. With torch: ``evaluate`` (`tfx evaluate`) and
``explain`` (`tfx explain`, needs the ``explain`` extra). The task metrics themselves live one
layer down in ``transfusion_cli.scores`` (training scores with them too)."""
