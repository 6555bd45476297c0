"""Experiment report for people who would rather look: HTML + PNG from the results API.

    python -m local.tools.report --api-url http://127.0.0.1:3000 --experiment recs-ab --out reports/

Left panel: the primary metric per variant with its 95% interval; right panel: the cumulative
relative lift of each variant over the control, day by day, with its interval.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

Z95 = 1.959963984540054


def fetch_results(
    api_url: str, experiment: str, params: dict | None = None, timeout: float = 30, signer=None
) -> dict:
    """GET /experiments/{id}/results, signed with SigV4 (the route always requires IAM);
    `signer`: (credentials, region), by default botocore's chain."""
    from local.tools import signed_http

    creds, region = signer or signed_http.default_credentials()
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{api_url.rstrip('/')}/experiments/{urllib.parse.quote(experiment, safe='')}/results"
    try:
        target = url + (f"?{query}" if query else "")
        status, data = signed_http.call("GET", target, creds=creds, region=region, timeout=timeout)
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach {url}: {exc.reason} (is `python -m local up` running?)") from None
    if status != 200:
        raise SystemExit(f"results API answered {status}: {data.decode(errors='replace')}")
    return json.loads(data)


def _num(x, fmt="{:.4g}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def plot(results: dict, path: Path) -> None:
    metric = results["primary_metric"]
    names = list(results["variants"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    means, errs = [], []
    for v in names:
        m = results["variants"][v]["metrics"][metric]
        means.append(m["mean"] if m["mean"] is not None else float("nan"))
        errs.append(Z95 * m["std_error"] if m["std_error"] is not None else 0.0)
    colors = [f"C{i}" for i in range(len(names))]
    left.bar(names, means, yerr=errs, capsize=6, color=colors, alpha=0.8)
    left.set_title(f"{metric} per variant (95% CI)")
    left.set_ylabel(metric)

    for i, v in enumerate(names[1:], start=1):
        rows = [r for r in results["timeline"] if r["lift"].get(v, {}).get("relative") is not None]
        if not rows:
            continue
        days = [r["day"] for r in rows]
        lift = [100 * r["lift"][v]["relative"] for r in rows]
        lo = [
            100 * (r["lift"][v]["relative_ci"][0] if r["lift"][v]["relative_ci"][0] is not None else math.nan)
            for r in rows
        ]
        hi = [
            100 * (r["lift"][v]["relative_ci"][1] if r["lift"][v]["relative_ci"][1] is not None else math.nan)
            for r in rows
        ]
        right.plot(days, lift, marker="o", color=f"C{i}", label=f"{v} vs {results['control']}")
        right.fill_between(days, lo, hi, color=f"C{i}", alpha=0.15)
    right.axhline(0, color="grey", lw=1)
    right.set_title("cumulative relative lift (%) with 95% CI")
    right.tick_params(axis="x", rotation=45)
    if right.get_legend_handles_labels()[0]:
        right.legend()
    fig.suptitle(f"{results['experiment_id']}: {results['verdict']['summary']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(results: dict, png: Path) -> str:
    metric, control = results["primary_metric"], results["control"]
    variants = [
        [
            v,
            _num(d["weight"], "{:.0%}"),
            _num(d["exposed"], "{:.0f}"),
            _num(d["metrics"][metric]["mean"]),
            _num(d["metrics"].get("value_per_user", {}).get("mean")),
        ]
        for v, d in results["variants"].items()
    ]
    comps = []
    for v, c in results["comparisons"][metric].items():
        seq = c["sequential"]
        comps.append(
            [
                v,
                _num(c["relative_lift"], "{:+.1%}"),
                f"[{_num(c['relative_ci'][0], '{:+.1%}')}, {_num(c['relative_ci'][1], '{:+.1%}')}]",
                _num(c["p_value_adjusted"]),
                _num(seq["p_value_adjusted"]),
                _num(c["bayes"]["chance_to_beat_control"], "{:.1%}"),
                _num(c["bayes"]["expected_loss"]),
                "yes" if c["significant"] else "no",
            ]
        )
    srm = results["srm"]
    power_rows = [
        [
            v,
            _num(p["mde_relative"], "{:.1%}"),
            _num(p["power"], "{:.0%}"),
            _num(p["users_needed"], "{:.0f}"),
            _num(p["days_needed"], "{:.0f}"),
        ]
        for v, p in results["power"]["variants"].items()
    ]
    img = base64.b64encode(png.read_bytes()).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{
        html.escape(results["experiment_id"])
    }</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}.verdict{{font-size:1.3em;padding:.5em;background:#eef}}</style>
</head><body><h1>Experiment {html.escape(results["experiment_id"])}</h1>
<p class="verdict">{html.escape(results["verdict"]["summary"])}</p>
<p>Primary metric <b>{html.escape(metric)}</b>, control <b>{html.escape(control)}</b>, alpha {
        results["alpha"]
    },
decisions from the <b>{html.escape(results["analysis"])}</b> analysis, {
        html.escape(results["correction"])
    } correction.</p>
<img src="data:image/png;base64,{img}" alt="chart" width="100%">
<h2>Variants</h2>{_table(["variant", "weight", "exposed users", metric, "value per user"], variants)}
<h2>Against {html.escape(control)}</h2>{
        _table(
            [
                "variant",
                "relative lift",
                "95% CI",
                "p (adj.)",
                "always-valid p (adj.)",
                "chance to beat control",
                "expected loss",
                "significant",
            ],
            comps,
        )
    }
<h2>Sample ratio</h2><p>chi-square p = {_num(srm["p_value"])}: <b>{html.escape(srm["status"])}</b>
(warn below {srm["warn_below"]}, alert below {srm["alert_below"]})</p>
<h2>Power</h2><p>Target: {_num(results["power"]["target_relative_lift"], "{:.0%}")} relative lift,
{_num(results["power"]["users_per_day"], "{:.0f}")} users/day.</p>
{_table(["variant", "MDE now", "power now", "users needed", "days needed"], power_rows)}
</body></html>"""


def write_report(results: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['experiment_id']}-results"
    png, page = out_dir / f"{stem}.png", out_dir / f"{stem}.html"
    plot(results, png)
    page.write_text(render_html(results, png), encoding="utf-8")
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return page, png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-url", required=True, help="base URL of the HTTP API, e.g. http://127.0.0.1:3000")
    ap.add_argument("--experiment", default="recs-ab")
    ap.add_argument("--out", default="reports", type=Path, help="output directory")
    ap.add_argument("--metric", help="primary metric (default: purchase_rate)")
    ap.add_argument("--analysis", choices=("sequential", "fixed"))
    ap.add_argument(
        "--state-dir",
        default=".local-state",
        help="a local stack's state dir: its credentials sign the request (else the AWS default chain)",
    )
    args = ap.parse_args(argv)
    from local.tools import signed_http

    signer = signed_http.stack_credentials(args.state_dir) or signed_http.default_credentials()
    query = {"metric": args.metric, "analysis": args.analysis}
    results = fetch_results(args.api_url, args.experiment, query, signer=signer)
    page, png = write_report(results, args.out)
    print(f"{results['verdict']['summary']}\nreport: {page}\nchart:  {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
