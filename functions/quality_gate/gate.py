"""The promotion rule, pure: a new solution version goes live only if it is not worse (by more
than the margin) than the version live now, and not worse than the popularity baseline trained
on the same data. A popularity recipe is not compared with itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class RollbackError(ValueError):
    """No earlier version to go back to (the message says why)."""


class GateConfigError(ValueError):
    """The configured metric does not exist (the message lists the ones that do)."""


@dataclass
class Decision:
    promote: bool
    outcome: str  # promote | rejected | unchanged
    reason: str
    metric: str
    new: float
    live: float | None
    baseline: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    metric: str,
    margin: float,
    new_metrics: dict,
    live_metrics: dict | None,
    baseline_metrics: dict | None,
    is_popularity: bool,
    same_version: bool = False,
) -> Decision:
    if metric not in new_metrics:
        raise GateConfigError(
            f"QualityGateMetric {metric!r} is not among the solution metrics "
            f"({', '.join(sorted(new_metrics))}); set the parameter to one of them."
        )
    new = float(new_metrics[metric])
    live = float(live_metrics[metric]) if live_metrics and metric in live_metrics else None
    base = None if is_popularity or not baseline_metrics else float(baseline_metrics.get(metric, 0.0))

    def out(promote: bool, outcome: str, reason: str) -> Decision:
        return Decision(promote, outcome, reason, metric, new, live, base)

    if same_version:
        return out(False, "unchanged", "this solution version is already live")
    if base is not None and new < base - margin:
        return out(False, "rejected", f"{metric} {new:.4f} is below the popularity baseline's {base:.4f} (margin {margin})")  # fmt: skip
    if live is not None and new < live - margin:
        return out(False, "rejected", f"{metric} {new:.4f} is below the live version's {live:.4f} (margin {margin})")  # fmt: skip
    against = "first version" if live is None else f"live {live:.4f}"
    return out(True, "promote", f"{metric} {new:.4f} passes ({against}, baseline {base if base is not None else 'n/a'})")  # fmt: skip


def dynamo_map(metrics: dict) -> dict:
    """A metrics map as a DynamoDB attribute value (the state machine writes it as is)."""
    return {"M": {k: {"N": repr(float(v))} for k, v in sorted(metrics.items())}}


def previous_version(variant: str, live_arn: str | None, history: list[dict]) -> dict:
    """The promotion before the live one; its history index is dropped by the rollback."""
    if len(history) < 2:
        raise RollbackError(f"rollback: variant {variant} has {len(history)} promoted version(s); there is no earlier one to go back to.")  # fmt: skip
    current, previous = history[-1], history[-2]
    if current.get("solution_version_arn") != live_arn:
        raise RollbackError(f"rollback: variant {variant}'s live version {live_arn} is not the last one in its history; fix the experiment record first.")  # fmt: skip
    return {
        "variant": variant,
        "campaignArn": previous["campaign_arn"],
        "solutionVersionArn": previous["solution_version_arn"],
        "fromSolutionVersionArn": live_arn,
        "removeIndex": len(history) - 1,
        "metrics": previous.get("metrics") or {},
    }
