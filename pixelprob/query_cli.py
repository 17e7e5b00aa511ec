"""``pixelprob query``: the command-line twin of :func:`pixelprob.query`."""
from __future__ import annotations

import json
from pathlib import Path

from . import regions


def _region(spec):
    """A region from a name (``top_half``), ``pixel:R,C``, ``rows:A,B`` or ``rect:R0,R1,C0,C1``; ``~`` negates."""
    if spec.startswith("~"):
        return ~_region(spec[1:])
    if ":" in spec:
        kind, args = spec.split(":", 1)
        nums = [int(a) for a in args.split(",")]
        makers = {"pixel": regions.pixel, "rows": regions.rows, "rect": regions.rect}
        if kind not in makers:
            raise ValueError(f"unknown region kind {kind!r}; use pixel:R,C, rows:A,B or rect:R0,R1,C0,C1")
        return makers[kind](*nums)
    return regions.as_region(spec)


def add_query_parser(sub):
    p = sub.add_parser("query", help="answer one query and write its figures")
    p.add_argument("--model", default="pixelcnn-mnist", help="shipped name or checkpoint path")
    p.add_argument("--image", default="test:0", help="split:index, e.g. test:7")
    p.add_argument("--observe", default="bottom_half", help="region name (or 'nothing'), pixel:R,C, rows:A,B, rect:..., ~REGION")
    p.add_argument("--target", default="middle_pixel")
    p.add_argument("--method", default="auto")
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="MNIST root for images beyond the 16 shipped test digits")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="folder for the figures")
    p.add_argument("--json", action="store_true", help="print machine-readable output")
    p.set_defaults(func=cmd_query)


def cmd_query(a):
    from . import plots
    from .checkpoint import load
    from .data import get_image, requantize
    from .query import query

    model = load(a.model, device=a.device)
    img = get_image(a.image, a.data)
    if model.levels != 256:
        img = requantize(img, model.levels)
    obs = _region(a.observe)
    res = query(model, observe=obs(img.long()), target=_region(a.target), method=a.method,
                num_samples=a.num_samples, seed=a.seed)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        res.plot(out / "answer.png")
        if res.method in ("gibbs", "nuts", "mwg"):
            plots.plot_trace(res, out / "trace.png")
            plots.plot_rank(res, out / "rank.png")
        if res.inference_data is not None and "svi_data" in res.inference_data.groups():
            plots.plot_elbo(res, out / "elbo.png")
    if a.json:
        print(json.dumps(res.to_dict()))
    else:
        print(res.summary())
