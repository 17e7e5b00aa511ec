"""``pixelprob demo``: questions a-g on real MNIST digits, both shipped models, one report.

Each question is one :func:`pixelprob.query` call; the report shows its
answer, error bars, diagnostics, cost (model evaluations and seconds), and a
figure. Nothing is downloaded or trained: the weights and a few MNIST test
digits ship inside the package.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from . import plots
from .checkpoint import load, shipped
from .data import shipped_digits
from .query import query
from .regions import bottom_half, first_pixel, middle_pixel, nothing, top_half

QUESTIONS = {
    "a": "marginal of the first pixel",
    "b": "marginal of the middle pixel",
    "c": "middle pixel given the top half",
    "d": "middle pixel given the bottom half",
    "e": "middle pixel given all the other pixels",
    "f": "bottom half given the top half (samples)",
    "g": "top half given the bottom half (inpainting)",
}

MATH = {
    "a": "p(x_0) = softmax of the logits at pixel 0: one forward pass (chain rule, nothing before it).",
    "b": "p(x_m) = E_{x_<m ~ p}[p(x_m | x_<m)]: the model's softmax averaged over ancestral samples "
         "(Rao-Blackwellised, not a histogram); error bars are 2 standard errors.",
    "c": "p(x_m | top half) = p(x_m | x_<m): read straight off the chain rule.",
    "d": "p(x_m | bottom half) needs the posterior over the ~390 hidden top-half pixels: Gibbs MCMC "
         "(Rao-Blackwellised full conditionals) and SVI (learned guide, importance-weighted) compared.",
    "e": "p(x_m | x_-m) is proportional to p(x_m | x_<m) prod_{j>m} p(x_j | x_<j): all 256 values "
         "enumerated with local re-evaluation of the network.",
    "f": "x_bottom ~ p(x_bottom | x_top): exact ancestral sampling in raster order.",
    "g": "x_top ~ p(x_top | x_bottom): MCMC and a learned guide; d is this posterior's middle-pixel marginal.",
}

VAE_MATH = ("For the VAE every question needs the posterior over the latent z: pixels are independent "
            "given z, so p(x_t | x_obs) = E_{z ~ p(z | x_obs)}[p(x_t | z)].")


@dataclass
class Budget:
    b_samples: int
    gibbs_sweeps: int
    gibbs_warmup: int
    gibbs_chains: int
    gibbs_variant: str
    svi_samples: int
    f_samples: int
    vae_samples: int
    nuts_samples: int


QUICK = Budget(b_samples=32, gibbs_sweeps=4, gibbs_warmup=2, gibbs_chains=4, gibbs_variant="mh", svi_samples=64, f_samples=8,
               vae_samples=500, nuts_samples=25)
FULL = Budget(b_samples=256, gibbs_sweeps=20, gibbs_warmup=5, gibbs_chains=4, gibbs_variant="mh", svi_samples=512, f_samples=16,
              vae_samples=5000, nuts_samples=100)


@dataclass
class Entry:
    model: str
    question: str
    method: str
    result: object
    figure: str
    caption: str
    extra_figures: List[tuple] = field(default_factory=list)


def _img_tag(path: Path):
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def _answer_text(res):
    if res.num_target == 1:
        p = res.probs_full[0, 0]
        mean = float((p * torch.arange(p.numel(), dtype=p.dtype)).sum())
        return f"P(black: 0-31)={float(p[:32].sum()):.3f}, P(white: 224-255)={float(p[224:].sum()):.3f}, mean {mean:.1f}"
    return f"{res.num_target} target pixels; mean level {float(res.mean().mean()):.1f}"


def _diag_text(res):
    keys = ["ess", "khat", "max_rhat", "min_ess_bulk", "acceptance_rate", "stopped_by", "log_evidence"]
    out = []
    for k in keys:
        v = res.diagnostics.get(k)
        if isinstance(v, float):
            out.append(f"{k}={v:.3g}")
        elif v is not None and not isinstance(v, (dict, list)):
            out.append(f"{k}={v}")
    return ", ".join(out)


class Report:
    def __init__(self, out: Path):
        self.out = out
        self.entries: List[Entry] = []

    def add(self, model_name, q, method, res, what, extra=None):
        name = f"{model_name}-{q}-{method}.png"
        how = (f"{res.method}{' (exact)' if res.exact else ''}: {res.num_model_evals:,} model evaluations, "
               f"{res.elapsed:.1f} s")
        if res.num_target == 1:
            title = f"{model_name} {q}: {QUESTIONS[q]} [{method}]"
            se = None if res.stderr_full is None else res.stderr_full[0, 0]
            plots.plot_probs(res.probs_full[0, 0], se, path=self.out / name, title=title)
        else:
            imgs = res.sample_images()[0][:16]
            plots.plot_images(imgs, res.levels, path=self.out / name,
                              title=f"{model_name} {q}: samples [{method}]", highlight=res.target_mask)
        diag = _diag_text(res)
        cap = f"{what}. Computed by {how}." + (f" Diagnostics: {diag}." if diag else "")
        entry = Entry(model_name, q, method, res, name, cap)
        for fn, label in extra or []:
            p = f"{model_name}-{q}-{method}-{label.split()[0].lower()}.png"
            try:
                fn(res, self.out / p)
                entry.extra_figures.append((p, f"{label} of the {method} run ({how})."))
            except Exception as err:  # a diagnostic plot must not sink the report
                entry.extra_figures.append((None, f"{label} unavailable: {err}"))
        self.entries.append(entry)
        return entry

    def add_figure(self, name, caption, model_name="pixelcnn", q="g", method="truth"):
        self.entries.append(Entry(model_name, q, method, None, name, caption))

    def table(self):
        rows = []
        for e in self.entries:
            if e.result is None:
                continue
            r = e.result
            rows.append((e.model, e.question, e.method, "yes" if r.exact else "no", r.num_model_evals,
                         f"{r.elapsed:.1f}", _answer_text(r)))
        return rows

    def write(self, header_lines):
        md = ["# pixelprob demo report", ""] + header_lines + [""]
        md += ["| model | q | method | exact | evals | seconds | answer |", "|---|---|---|---|---|---|---|"]
        md += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.table()]
        md.append("")
        body = ["<h1>pixelprob demo report</h1>"] + [f"<p>{html.escape(h)}</p>" for h in header_lines]
        body.append("<table border=1 cellpadding=3><tr><th>model</th><th>q</th><th>method</th><th>exact</th>"
                    "<th>evals</th><th>seconds</th><th>answer</th></tr>")
        for row in self.table():
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        body.append("</table>")
        last = None
        for e in self.entries:
            key = (e.model, e.question)
            if key != last:
                title = f"{e.model}, question {e.question}: {QUESTIONS[e.question]}"
                md += [f"## {title}", "", f"Math: {MATH[e.question]}", ""]
                body += [f"<h2>{html.escape(title)}</h2>", f"<p><i>{html.escape(MATH[e.question])}</i></p>"]
                last = key
            md += [f"![{e.question} {e.method}]({e.figure})", "", f"*{e.caption}*", ""]
            body += [_img_tag(self.out / e.figure), f"<p>{html.escape(e.caption)}</p>"]
            for fig, cap in e.extra_figures:
                if fig:
                    md += [f"![{cap}]({fig})", "", f"*{cap}*", ""]
                    body += [_img_tag(self.out / fig), f"<p>{html.escape(cap)}</p>"]
                else:
                    md += [f"*{cap}*", ""]
        (self.out / "report.md").write_text("\n".join(md))
        (self.out / "report.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>pixelprob demo</title></head><body "
            "style='font-family:sans-serif;max-width:900px;margin:auto'>" + "\n".join(body) + "</body></html>")


def run_demo(out="report", quick=False, device=None, digit=0, seed=0, progress=True, models=None):
    """Answer a-g on shipped digit ``digit`` with each shipped model; write ``out/report.{md,html}``.

    Returns the :class:`Report` (its entries hold every QueryResult).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = QUICK if quick else FULL
    images, labels = shipped_digits()
    img = images[digit].long()
    report = Report(out)
    t0 = time.time()
    plots.plot_images(img[None], 256, path=out / "digit.png", title=f"MNIST test digit {digit} (label {int(labels[digit])})")
    names = models or [n for n in ("pixelcnn-mnist", "vae-mnist") if n in shipped()]
    plan = []
    if "pixelcnn-mnist" in names:
        plan += [
            ("a", "exact", dict(observe=None, target=first_pixel), {}),
            ("b", "ancestral", dict(observe=None, target=middle_pixel), dict(num_samples=budget.b_samples)),
            ("c", "exact", dict(observe=top_half(img), target=middle_pixel), {}),
            ("d", "gibbs", dict(observe=bottom_half(img), target=middle_pixel),
             dict(num_samples=budget.gibbs_sweeps, warmup=budget.gibbs_warmup, chains=budget.gibbs_chains,
                  variant=budget.gibbs_variant)),
            ("d", "svi", dict(observe=bottom_half(img), target=middle_pixel), dict(num_samples=budget.svi_samples)),
            ("e", "exact", dict(observe=(~middle_pixel)(img), target=middle_pixel), {}),
            ("f", "ancestral", dict(observe=top_half(img), target=bottom_half), dict(num_samples=budget.f_samples)),
            ("g", "gibbs", dict(observe=bottom_half(img), target=top_half),
             dict(num_samples=budget.gibbs_sweeps, warmup=budget.gibbs_warmup, chains=budget.gibbs_chains,
                  variant=budget.gibbs_variant)),
            ("g", "svi", dict(observe=bottom_half(img), target=top_half), dict(num_samples=budget.svi_samples)),
        ]
        plan = [("pixelcnn-mnist",) + p for p in plan]
    if "vae-mnist" in names:
        vplan = [
            ("a", "ancestral", dict(observe=None, target=first_pixel), dict(num_samples=budget.vae_samples)),
            ("b", "ancestral", dict(observe=None, target=middle_pixel), dict(num_samples=budget.vae_samples)),
            ("c", "importance", dict(observe=top_half(img), target=middle_pixel), dict(num_samples=budget.vae_samples)),
            ("d", "importance", dict(observe=bottom_half(img), target=middle_pixel), dict(num_samples=budget.vae_samples)),
            ("d", "nuts", dict(observe=bottom_half(img), target=middle_pixel), dict(num_samples=budget.nuts_samples)),
            ("e", "svi", dict(observe=(~middle_pixel)(img), target=middle_pixel), {}),
            ("f", "importance", dict(observe=top_half(img), target=bottom_half), dict(num_samples=budget.vae_samples)),
            ("g", "importance", dict(observe=bottom_half(img), target=top_half), dict(num_samples=budget.vae_samples)),
        ]
        plan += [("vae-mnist",) + p for p in vplan]
    loaded = {n: load(n, device=device) for n in names}
    bar = tqdm(plan, desc="questions", disable=not progress)
    for name, q, method, kw, opts in bar:
        bar.set_postfix_str(f"{name} {q} {method}")
        model = loaded[name]
        res = query(model, method=method, seed=seed, **kw, **opts)
        extra = []
        if method in ("gibbs", "nuts", "mwg"):
            extra = [(plots.plot_trace, "trace plot"), (plots.plot_rank, "rank plot")]
        if method == "svi" and res.inference_data is not None and "svi_data" in res.inference_data.groups():
            extra = [(plots.plot_elbo, "ELBO curve")]
        what = QUESTIONS[q][0].upper() + QUESTIONS[q][1:]
        report.add(name.split("-")[0], q, method, res, what, extra)
        if q == "g":
            # the inpaintings next to the true digit
            p = f"{name.split('-')[0]}-g-{method}-inpaint.png"
            imgs = torch.cat([img[None].cpu(), res.sample_images()[0][:7].cpu()])
            plots.plot_images(imgs, 256, path=out / p, title="true digit, then inpaintings of the top half")
            report.entries[-1].extra_figures.append(
                (p, f"Left: the true digit; then {min(7, res.samples_full.shape[1])} inpaintings (top half sampled "
                    f"given the bottom half by {method}; {res.num_model_evals:,} evaluations, {res.elapsed:.1f} s)."))
    header = [f"Digit: MNIST test image {digit} (label {int(labels[digit])}); models: {', '.join(names)}; "
              f"{'quick' if quick else 'full'} budget; seed {seed}; total {time.time() - t0:.0f} s.",
              VAE_MATH]
    report.write(header)
    (out / "answers.json").write_text(json.dumps(
        [dict(e.result.to_dict(), model=e.model, question=e.question)
         for e in report.entries if e.result is not None]))
    if progress:
        print(f"\n{'model':9} {'q':2} {'method':10} {'evals':>9} {'sec':>6}  answer")
        for row in report.table():
            print(f"{row[0]:9} {row[1]:2} {row[2]:10} {row[4]:>9} {row[5]:>6}  {row[6]}")
        print(f"\nreport: {out / 'report.html'} and {out / 'report.md'}")
    return report


def add_demo_parser(sub):
    p = sub.add_parser("demo", help="answer questions a-g on MNIST digits with the shipped models; write a report")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--quick", action="store_true", help="small budgets (about a minute or two on 2 CPU cores)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--digit", type=int, default=0, help="which shipped test digit (0-15)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: run_demo(a.out, a.quick, a.device, a.digit, a.seed) and None)
