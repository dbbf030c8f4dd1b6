"""What a similarity metric returns, and the errors and warnings of the similarity package."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from transfusion_cli.errors import TfxError


class SimilarityError(TfxError):
    """Inputs a similarity metric cannot be computed on (too few data points, shape mismatch)."""


class SimilarityWarning(UserWarning):
    """A similarity value is NaN; the message says why."""


@dataclass
class MetricResult:
    """One metric value with why it is NaN (``reason``) and what it was computed from."""

    value: float
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    @classmethod
    def nan(cls, reason: str, **details: Any) -> MetricResult:
        """An undefined value and its reason."""
        return cls(math.nan, reason, dict(details))


def as_float(result: MetricResult) -> float:
    """The plain value; a NaN is announced with a SimilarityWarning carrying its reason."""
    if result.reason is not None:
        warnings.warn(result.reason, SimilarityWarning, stacklevel=3)
    return float(result.value)
