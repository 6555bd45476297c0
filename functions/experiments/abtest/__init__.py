"""A/B test statistics computed from sufficient statistics (counts, sums, sums of squares).

Nothing here reads raw events: every figure derives from the aggregate counters described in
docs/architecture.md, so results cost one DynamoDB Query however large the experiment grows.
"""

from .analysis import AnalysisOptions, analyze

__all__ = ["AnalysisOptions", "analyze"]
