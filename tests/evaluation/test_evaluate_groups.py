"""Patient ids reach the bootstrap: retina splits carry ``groups`` (EyePACS: both eyes of a
patient share one), and the bootstrap then resamples whole patients."""

from __future__ import annotations

import numpy as np
import pytest
from datasets_fixtures import write_eyepacs

from transfusion_cli.data.build import build_dataset
from transfusion_cli.evaluation.bootstrap import bootstrap_indices
from transfusion_cli.evaluation.evaluate import dataset_groups

pytestmark = pytest.mark.usefixtures("cache_dir")


def test_eyepacs_splits_carry_patient_ids_and_resamples_keep_eyes_together(tmp_path):
    bundle = build_dataset("retina", data_dir=write_eyepacs(tmp_path / "eyepacs"),
                           image_size=32, seed=1)
    split = bundle.train
    groups = dataset_groups(split)
    assert groups == [image_id.rsplit("_", 1)[0] for image_id in split.ids]
    assert len(set(groups)) < len(groups)  # some patients have two eyes here
    labels = np.asarray(split.labels)
    for idx in bootstrap_indices(labels, groups, n_boot=20, seed=0):
        drawn = [groups[i] for i in idx]
        for patient in set(drawn):  # every eye of a drawn patient, as often as the patient
            eyes = groups.count(patient)
            assert drawn.count(patient) % eyes == 0
