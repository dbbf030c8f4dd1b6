"""`tfx reproduce`: the paper's experiments as one resumable study with a verdict per claim."""

from transfusion_cli.reproduce.claims import Evidence, Verdict, all_verdicts
from transfusion_cli.reproduce.pipeline import StudyResult, run_study
from transfusion_cli.reproduce.study import PARTS, Study, load_study

__all__ = ["PARTS", "Evidence", "Study", "StudyResult", "Verdict", "all_verdicts", "load_study",
           "run_study"]
