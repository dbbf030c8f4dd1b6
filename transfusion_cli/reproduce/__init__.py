"""`tfx reproduce`: the paper's experiments as one resumable study with a verdict per claim."""

from transfusion_cli.reproduce.claims import judge
from transfusion_cli.reproduce.evidence import Evidence
from transfusion_cli.reproduce.pipeline import StudyResult, run_study
from transfusion_cli.reproduce.study import PARTS, Study, load_study
from transfusion_cli.reproduce.verdicts import Verdict

__all__ = ["PARTS", "Evidence", "Study", "StudyResult", "Verdict", "judge", "load_study",
           "run_study"]
