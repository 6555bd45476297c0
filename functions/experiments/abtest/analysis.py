"""From aggregate counters and the experiment's config to the full results document."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
from scipy import stats

from . import bayes, frequentist, power, sequential
from .moments import moments, proportion, ratio
from .srm import srm_check

ANALYSES = ("sequential", "fixed")
CORRECTIONS = ("holm", "bonferroni", "none")


@dataclass(frozen=True)
class AnalysisOptions:
    alpha: float = 0.05
    analysis: str = "sequential"  # which p-values/intervals drive "significant" and the verdict
    metric: str | None = None  # primary metric; default purchase_rate (conversion)
    mde: float = 0.05  # relative lift worth detecting, for power, days needed and "no difference"
    tau: float = 0.1  # mSPRT mixing SD, in units of the per-user SD of the metric
    correction: str = "holm"
    min_users: int = 100  # per variant before any verdict other than "keep running"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # proportion | mean | ratio
    source: tuple[str, ...]
    description: str


def metric_specs(event_types: list[str]) -> list[MetricSpec]:
    specs = []
    for e in event_types:
        specs.append(MetricSpec(f"{e}_rate", "proportion", (e,), f"share of exposed users with a {e}"))
        specs.append(MetricSpec(f"{e}_per_user", "mean", (e,), f"{e} events per exposed user"))
    specs.append(MetricSpec("value_per_user", "mean", ("value",), "event value (revenue) per exposed user"))
    if "click" in event_types and "view" in event_types:
        specs.append(
            MetricSpec("click_per_view", "ratio", ("click", "view"), "clicks / views (delta method)")
        )
    return specs


def default_metric(event_types: list[str]) -> str:
    return "purchase_rate" if "purchase" in event_types else f"{event_types[-1]}_rate"


def _stat(spec: MetricSpec, counters: dict):
    n = float(counters.get("exposed", 0.0))
    if spec.kind == "proportion":
        n = max(n, counters.get(f"users_{spec.source[0]}", 0.0))
        return proportion(counters, spec.source[0], n)
    if spec.kind == "mean":
        return moments(counters, spec.source[0], n)
    return ratio(counters, *spec.source, n)


def _theta_var(spec: MetricSpec, c, t):
    """Difference of means and its variance, elementwise-safe (NaN when undefined)."""
    if c.n <= 0 or t.n <= 0:
        return float("nan"), float("nan")
    # proportions: the unpooled variance, the same as the Wald CI of the fixed analysis
    return t.mean - c.mean, t.var_of_mean + c.var_of_mean


def _compare(spec: MetricSpec, c, t, alpha: float) -> dict:
    zq = stats.norm.isf(alpha / 2)
    out: dict = {"control_mean": c.mean, "variant_mean": t.mean}
    if spec.kind == "proportion":
        diff, se, z, p = frequentist.two_proportion_z(c.successes, c.n, t.successes, t.n)
        half = zq * se
        out.update(test="two-proportion z", statistic=z)
        chance, loss = bayes.beta_binomial(c.successes, c.n, t.successes, t.n)
    elif spec.kind == "mean":
        diff, se, df, tstat, p = frequentist.welch_t(c.mean, c.variance, c.n, t.mean, t.variance, t.n)
        half = stats.t.isf(alpha / 2, df) * se if np.isfinite(df) else float("nan")
        out.update(test="Welch t", statistic=tstat, df=df)
        chance, loss = bayes.normal(float(diff), float(se))
    else:
        diff = t.mean - c.mean
        se = math.sqrt(t.var_of_mean + c.var_of_mean)
        z, p = frequentist.z_test(diff, se)
        half = zq * se
        out.update(test="delta-method z (ratio)", statistic=z)
        chance, loss = bayes.normal(float(diff), float(se))
    rel, rel_se = frequentist.relative_lift(c.mean, c.var_of_mean, t.mean, t.var_of_mean)
    out.update(
        absolute_lift=diff,
        absolute_ci=[diff - half, diff + half],
        relative_lift=rel,
        relative_ci=[rel - zq * rel_se, rel + zq * rel_se],
        p_value=p,
        bayes={"chance_to_beat_control": chance, "expected_loss": loss},
    )
    return out


def _cumulative(days: dict[str, dict], all_days: list[str]) -> list[dict]:
    """Prefix sums of the day slices: the cumulative counters at the end of each day."""

    def add(a: dict, b: dict) -> dict:
        return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a.keys() | b.keys()}

    return list(accumulate((days.get(d, {}) for d in all_days), add, initial={}))[1:]


def _adjust(pvalues: list, correction: str) -> list:
    if correction == "holm":
        return list(frequentist.holm(pvalues))
    if correction == "bonferroni":
        return list(frequentist.bonferroni(pvalues))
    return list(pvalues)


def analyze(totals: dict, config: dict, event_types: list[str], opts: AnalysisOptions) -> dict:
    """The results document (see docs/openapi.yaml, ExperimentResults).

    totals: recsys_common.aggregates.variant_totals(items); config: {"control": name,
    "weights": {name: weight}} in serving order.
    """
    control, weights = config["control"], config["weights"]
    names = [control] + [v for v in [*weights, *totals] if v != control]
    names = list(dict.fromkeys(names))
    treatments = names[1:]
    specs = metric_specs(event_types)
    primary = opts.metric or default_metric(event_types)
    alls = {v: totals.get(v, {}).get("all", {}) for v in names}
    all_days = sorted({d for v in names for d in totals.get(v, {}).get("days", {})})
    cum = {v: _cumulative(totals.get(v, {}).get("days", {}), all_days) for v in names}

    variants = {}
    for v in names:
        a = alls[v]
        variants[v] = {
            "weight": weights.get(v, 0.0),
            "exposed": a.get("exposed", 0.0),
            "requests": a.get("requests", 0.0),
            "fallbacks": a.get("fallbacks", 0.0),
            "events": {e: a.get(f"events_{e}", 0.0) for e in event_types},
            "metrics": {},
        }
        for spec in specs:
            s = _stat(spec, a)
            variants[v]["metrics"][spec.name] = {
                "mean": s.mean,
                "variance": s.variance,
                "std_error": math.sqrt(s.var_of_mean) if s.var_of_mean >= 0 else None,
            }

    comparisons: dict = {}
    timeline_lifts: dict = {}
    for spec in specs:
        per = {}
        for v in treatments:
            c, t = _stat(spec, alls[control]), _stat(spec, alls[v])
            res = _compare(spec, c, t, opts.alpha)
            # Sequential: one look per day (cumulative), then the ALL slice as the latest look.
            looks = [(_stat(spec, cc), _stat(spec, tt)) for cc, tt in zip(cum[control], cum[v], strict=True)]
            looks.append((c, t))
            th, var = np.array([_theta_var(spec, a, b) for a, b in looks]).T
            finite = [x for x in (c.variance, t.variance) if np.isfinite(x)]
            unit_var = sum(finite) / len(finite) if finite else float("nan")
            tau2 = (opts.tau**2) * unit_var if np.isfinite(unit_var) and unit_var > 0 else float("nan")
            p_seq, lo, hi = sequential.always_valid(th, var, tau2, opts.alpha)
            res["sequential"] = {
                "p_value": p_seq[-1],
                "ci": [lo[-1], hi[-1]],
                "tau2": tau2,
            }
            if spec.name == primary:
                timeline_lifts[v] = (looks[:-1], p_seq[:-1], lo[:-1], hi[:-1])
            per[v] = res
        for key in ("fixed", "sequential"):
            ps = [
                per[v]["p_value"] if key == "fixed" else per[v]["sequential"]["p_value"] for v in treatments
            ]
            adj = _adjust(ps, opts.correction)
            for v, pa in zip(treatments, adj, strict=True):
                target = per[v] if key == "fixed" else per[v]["sequential"]
                target["p_value_adjusted"] = pa
        for v in treatments:
            chosen = per[v] if opts.analysis == "fixed" else per[v]["sequential"]
            per[v]["significant"] = bool(
                np.isfinite(chosen["p_value_adjusted"]) and chosen["p_value_adjusted"] < opts.alpha
            )
        comparisons[spec.name] = per

    srm = srm_check({v: variants[v]["exposed"] for v in names}, weights)
    spec = next(s for s in specs if s.name == primary)
    pw = _power(spec, alls, cum, control, treatments, weights, all_days, opts)
    timeline = _timeline(spec, all_days, cum, control, timeline_lifts, opts.alpha)
    verdict = _verdict(primary, comparisons[primary], variants, control, srm, pw, opts)
    return _clean(
        {
            "control": control,
            "primary_metric": primary,
            "alpha": opts.alpha,
            "analysis": opts.analysis,
            "correction": opts.correction,
            "metrics": {s.name: {"kind": s.kind, "description": s.description} for s in specs},
            "variants": variants,
            "comparisons": comparisons,
            "srm": srm,
            "power": pw,
            "timeline": timeline,
            "verdict": verdict,
        }
    )


def _power(spec, alls, cum, control, treatments, weights, all_days, opts) -> dict:
    k = max(len(treatments), 1)
    a = opts.alpha / k
    total_w = sum(w for w in weights.values() if w > 0) or 1.0
    exposed_by_day = {d: sum(cum[v][i].get("exposed", 0.0) for v in cum) for i, d in enumerate(all_days)}
    # cumulative -> per-day totals
    prev, per_day = 0.0, {}
    for d in all_days:
        per_day[d], prev = exposed_by_day[d] - prev, exposed_by_day[d]
    rate = power.daily_rate(per_day)
    have = sum(alls[v].get("exposed", 0.0) for v in alls)
    c = _stat(spec, alls[control])
    out = {
        "metric": spec.name,
        "target_relative_lift": opts.mde,
        "alpha_per_comparison": a,
        "users_per_day": rate,
        "variants": {},
    }
    for v in treatments:
        t = _stat(spec, alls[v])
        se = math.sqrt(c.var_of_mean + t.var_of_mean) if c.n >= 2 and t.n >= 2 else float("nan")
        delta = opts.mde * abs(c.mean) if np.isfinite(c.mean) else float("nan")
        mde_abs = power.mde(se, a) if np.isfinite(se) else float("nan")
        entry = {
            "mde_absolute": mde_abs,
            "mde_relative": mde_abs / c.mean if c.mean else None,
            "power": power.power_at(delta, se, a) if np.isfinite(se) and se > 0 and delta else None,
            "users_needed": None,
            "days_needed": None,
        }
        if np.isfinite(delta) and delta > 0 and c.variance > 0:
            var1 = t.variance if np.isfinite(t.variance) and t.variance > 0 else c.variance
            needed = power.users_needed(
                delta, c.variance, var1, weights.get(control, 0) / total_w, weights.get(v, 0) / total_w, a
            )
            entry["users_needed"] = needed
            entry["days_needed"] = power.days_needed(needed, have, rate)
        out["variants"][v] = entry
    return out


def _timeline(spec, all_days, cum, control, lifts, alpha) -> list[dict]:
    zq = stats.norm.isf(alpha / 2)
    rows = []
    for i, day in enumerate(all_days):
        row = {
            "day": day,
            "exposed": {v: cum[v][i].get("exposed", 0.0) for v in cum},
            "means": {v: _stat(spec, cum[v][i]).mean for v in cum},
            "lift": {},
        }
        for v, (looks, p_seq, lo, hi) in lifts.items():
            c, t = looks[i]
            rel, rel_se = frequentist.relative_lift(c.mean, c.var_of_mean, t.mean, t.var_of_mean)
            diff, var = _theta_var(spec, c, t)
            row["lift"][v] = {
                "relative": rel,
                "relative_ci": [rel - zq * rel_se, rel + zq * rel_se],
                "absolute": diff,
                "absolute_ci": [diff - zq * math.sqrt(var), diff + zq * math.sqrt(var)] if var >= 0 else None,
                "sequential_p": p_seq[i],
                "sequential_ci": [lo[i], hi[i]],
            }
        rows.append(row)
    return rows


def _verdict(metric, comps, variants, control, srm, pw, opts) -> dict:
    def done(decision, summary, winner=None):
        return {"decision": decision, "winner": winner, "metric": metric, "summary": summary}

    if srm["status"] == "alert":
        return done(
            "invalid",
            f"Sample ratio mismatch (p={srm['p_value']}): exposures do not match the "
            "weights; fix assignment/logging before trusting any result.",
        )
    small = [v for v in variants if variants[v]["weight"] > 0 and variants[v]["exposed"] < opts.min_users]
    if small:
        return done(
            "keep_running", f"Keep running: fewer than {opts.min_users} exposed users in {', '.join(small)}."
        )
    if not comps:
        return done("keep_running", "Keep running: no variant to compare with the control.")
    ci_key = "absolute_ci" if opts.analysis == "fixed" else None
    better = [v for v, r in comps.items() if r["significant"] and r["absolute_lift"] > 0]
    worse = [v for v, r in comps.items() if r["significant"] and r["absolute_lift"] < 0]
    if better:
        best = max(better, key=lambda v: comps[v]["variant_mean"])
        r = comps[best]
        return done(
            "winner",
            f"Variant {best} wins on {metric}: {r['relative_lift']:+.1%} vs {control} "
            f"(adjusted p={_p(r, opts)}, {opts.analysis}).",
            best,
        )
    if len(worse) == len(comps):
        return done(
            "winner", f"Control {control} wins on {metric}: every variant is significantly worse.", control
        )
    bands = []
    for v, r in comps.items():
        delta = opts.mde * abs(r["control_mean"] or 0)
        ci = r[ci_key] if ci_key else r["sequential"]["ci"]
        reached = (pw["variants"].get(v) or {}).get("days_needed") == 0
        bands.append(delta > 0 and ((-delta < ci[0] and ci[1] < delta) or reached))
    if all(bands):
        return done(
            "no_difference",
            f"No meaningful difference on {metric}: no variant differs from {control} "
            f"by {opts.mde:.0%} or more.",
        )
    days = [e["days_needed"] for e in pw["variants"].values() if e.get("days_needed") is not None]
    more = f" (about {max(days)} more days at the current traffic)" if days else ""
    return done("keep_running", f"Keep running{more}: no significant difference on {metric} yet.")


def _p(r, opts):
    p = r["p_value_adjusted"] if opts.analysis == "fixed" else r["sequential"]["p_value_adjusted"]
    return f"{p:.3g}"


def _clean(x):
    """JSON-safe: numpy scalars to Python, NaN/inf to None, whole floats kept as floats."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
