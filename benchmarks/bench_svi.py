"""Query d on the shipped PixelCNN: the middle pixel given the bottom half, by SVI and its rivals.

For each of ``--queries`` exact joint draws ``x* ~ p`` (the model's own
sampler, so the truth is known), the bottom half of ``x*`` is observed and
the middle pixel asked for (the top half is hidden too). Each method's answer
``p^(x_mid | bottom half)`` is scored by the log-probability it gives the true
``x*_mid`` -- a proper scoring rule: its expectation over ``x* ~ p`` is highest
for the exact posterior -- and by cost (model evaluations, seconds) and, for
the importance samplers, the effective sample size and PSIS k-hat.

Methods: likelihood weighting (``"importance"``), Gibbs (``"gibbs"``,
``variant="pruned"``, the fastest exact-invariant kernel; skipped if
missing), SVI with the shipped amortised guide, SVI with a guide fitted per
query (RWS), and a reference run of amortised SVI at ``--ref-factor`` times
its budget.

    python benchmarks/bench_svi.py --queries 4 --readme    # writes the table into benchmarks/README.md
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from pathlib import Path

import torch

import pixelprob as pp

SECTION = "## SVI (issue 7)"


def run(model, x, method, **kw):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = pp.query(model, pp.bottom_half(x), pp.middle_pixel, method=method, **kw)
    return r, time.perf_counter() - t0


def render(rows):
    """Markdown table from ``{label: {"logscore": [...], "evals": [...], "seconds": [...], "ess": [...], "khat": [...]}}``.

    The mean log score is dominated by any answer that gives the truth
    probability ~0 (floored at 1e-300, i.e. -690.8 nats), so the median and the
    number of such answers are shown too.
    """
    ref = max(rows, key=lambda k: statistics.mean(rows[k]["logscore"]))
    best = statistics.mean(rows[ref]["logscore"])
    lines = ["| method | mean log p(true x_mid) | gap to best mean | median | answers with p(true) < 1e-6 | "
             "model evals / query | s / query | mean ESS | max k-hat |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, s in rows.items():
        ls = statistics.mean(s["logscore"])
        ess = f"{statistics.mean(s['ess']):.1f}" if s["ess"] else "-"
        kh = f"{max(s['khat']):.2f}" if s["khat"] else "-"
        zero = sum(v < math.log(1e-6) for v in s["logscore"])
        lines.append(f"| {label} | {ls:.4f} | {best - ls:.4f} | {statistics.median(s['logscore']):.4f} | "
                     f"{zero}/{len(s['logscore'])} | {statistics.mean(s['evals']):.0f} | "
                     f"{statistics.mean(s['seconds']):.1f} | {ess} | {kh} |")
    return "\n".join(lines)


def parse_log(path):
    """The per-query lines a run printed, back into ``rows`` (to re-render a finished run)."""
    import re
    rows = {}
    pat = re.compile(r"^(.+?)\s+query (\d+): log p\(true\)\s+(\S+)\s+evals\s+(\d+)\s+(\S+) s\s*(.*)$")
    for line in Path(path).read_text().splitlines():
        m = pat.match(line)
        if not m:
            continue
        label, _, ls, ev, sec, rest = m.groups()
        st = rows.setdefault(label.strip(), {"logscore": [], "evals": [], "seconds": [], "ess": [], "khat": []})
        st["logscore"].append(float(ls))
        st["evals"].append(int(ev))
        st["seconds"].append(float(sec))
        kv = dict(t.split("=") for t in rest.split())
        if "ess" in kv:
            st["ess"].append(float(kv["ess"]))
        if "khat" in kv:
            st["khat"].append(float(kv["khat"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pixelcnn-mnist")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--svi-samples", type=int, default=128)
    ap.add_argument("--is-samples", type=int, default=256)
    ap.add_argument("--gibbs-sweeps", type=int, default=6)
    ap.add_argument("--gibbs-warmup", type=int, default=3)
    ap.add_argument("--per-query-seconds", type=float, default=60.0)
    ap.add_argument("--ref-factor", type=int, default=10)
    ap.add_argument("--skip", default="", help="comma-separated method labels to skip")
    ap.add_argument("--guide", default=None, help="amortised guide checkpoint (default: the shipped one that matches)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    ap.add_argument("--render-log", default=None, help="only re-render the table of a finished run's printed log")
    a = ap.parse_args(argv)
    if a.render_log:
        print(render(parse_log(a.render_log)))
        return
    torch.set_num_threads(a.threads)
    model = pp.load(a.model, device="cpu")
    from pixelprob.infer.svi import _shipped_guide
    guide, gpath = _shipped_guide(model, pp.bottom_half.mask(model.shape))
    if a.guide:
        from pixelprob.infer.guides import AutoregressiveGuide
        guide, gpath = AutoregressiveGuide.load(a.guide), Path(a.guide)
    methods = pp.methods(model)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    S = a.svi_samples
    configs = [
        ("importance (likelihood weighting)", "importance", {"num_samples": a.is_samples}),
        ("gibbs (pruned)", "gibbs", {"variant": "pruned", "chains": 2, "num_samples": a.gibbs_sweeps,
                                     "warmup": a.gibbs_warmup, "warn": False}),
        ("svi, amortised guide", "svi", {"num_samples": S, "guide": guide}),
        ("svi, per-query guide (RWS)", "svi", {"num_samples": S, "use_shipped": False, "particles": 8,
                                               "max_seconds": a.per_query_seconds}),
        (f"reference: svi amortised x{a.ref_factor}", "svi", {"num_samples": S * a.ref_factor, "guide": guide}),
    ]
    if guide is None:
        skip |= {"amortised"}
        print(f"no shipped guide matches {a.model}: amortised rows skipped")
    torch.manual_seed(a.seed)
    truth = model.sample(a.queries)
    rows = {}
    for label, method, kw in configs:
        if method not in methods or any(s in label for s in skip):
            print(f"skipping {label} ({'not registered' if method not in methods else 'skipped'})")
            continue
        stats = {"logscore": [], "evals": [], "seconds": [], "ess": [], "khat": []}
        for q in range(a.queries):
            x = truth[q]
            r, sec = run(model, x, method, seed=a.seed + q, **kw)
            p = float(r.probs[int(x[0, 14, 14])])
            stats["logscore"].append(math.log(max(p, 1e-300)))
            stats["evals"].append(r.num_model_evals)
            stats["seconds"].append(sec)
            d = r.diagnostics
            if "ess" in d:
                stats["ess"].append(float(d["ess"]))
            if "khat" in d:
                stats["khat"].append(float(d["khat"]))
            print(f"{label:38s} query {q}: log p(true) {stats['logscore'][-1]:8.4f}  evals {r.num_model_evals:8d}  "
                  f"{sec:6.1f} s  " + "  ".join(f"{k}={d[k]:.3g}" for k in ("ess", "khat", "fit_steps", "rb_draws")
                                               if isinstance(d.get(k), (int, float))), flush=True)
        rows[label] = stats
    if not rows:
        return
    table = render(rows)
    print(table)
    if a.readme:
        text = (f"{SECTION}\n\n"
                f"`python benchmarks/bench_svi.py {' '.join(argv if argv is not None else __import__('sys').argv[1:])}` "
                f"on `{a.model}` ({a.queries} queries: exact joint draws, bottom half observed, middle pixel asked; "
                f"amortised guide: {gpath.name if gpath else 'none'}). Model evaluations: full passes plus "
                f"local candidate re-evaluations (guide evaluations are not counted). Seconds on a shared 2-core CPU.\n\n"
                f"{table}\n")
        readme = Path(__file__).parent / "README.md"
        old = readme.read_text() if readme.exists() else "# Benchmarks\n"
        if SECTION in old:
            head, rest = old.split(SECTION, 1)
            nxt = rest.find("\n## ")
            old = head + (rest[nxt + 1:] if nxt >= 0 else "")
        readme.write_text(old.rstrip("\n") + "\n\n" + text)
        print(f"wrote {SECTION} into {readme}")


if __name__ == "__main__":
    main()
