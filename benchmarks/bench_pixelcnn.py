"""PixelCNN benchmarks (issues 2, 4, 5): throughput, fast paths, and the cost of queries a, b, c, e, f.

    python benchmarks/bench_pixelcnn.py [--model pixelcnn-mnist] [--device cpu] [--sections all]

Every ratio is measured within this one run (these machines are noisy).
Prints markdown tables.
"""
import argparse
import math
import time

import torch

import pixelprob as pp
from pixelprob.models import PixelCNN, fast
from pixelprob.models.pixelcnn import naive_sample


def timeit(fn, repeat=3):
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def throughput(device):
    print("\n### Throughput (images per second)\n")
    print("| configuration | parameters | forward img/s | train img/s |")
    print("|---|---|---|---|")
    x = torch.randint(0, 256, (64, 1, 28, 28), device=device)
    for name, kw in [("default (32 ch, 5 layers, plain)", dict()),
                     ("shipped (48 ch, 6 layers, gated)", dict(channels=48, layers=6, gated=True))]:
        torch.manual_seed(0)
        m = PixelCNN(**kw).to(device)
        opt = torch.optim.Adam(m.parameters())

        def step():
            loss = m.calc_likelihood(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        step()
        t_train = timeit(step)
        m.eval()
        with torch.no_grad():
            t_fwd = timeit(lambda: m(x))
        n = sum(p.numel() for p in m.parameters())
        print(f"| {name} | {n:,} | {64 / t_fwd:.0f} | {64 / t_train:.0f} |")


@torch.no_grad()
def sampling(model, device, n=64, steps=28):
    print("\n### Ancestral sampling of 64 MNIST images: naive loop vs activation cache\n")
    C, H, W = model.shape
    noise = torch.rand(n, C, H, W, generator=torch.Generator().manual_seed(0)).to(device)
    zeros = torch.zeros(n, C, H, W, dtype=torch.long, device=device)
    mask = torch.zeros_like(zeros, dtype=torch.bool)
    # the naive loop costs one full forward pass per pixel; time `steps` pixels and scale to H*W
    t = time.perf_counter()
    a = naive_sample(model, zeros.clone(), mask, noise, upto=steps)
    t_naive_part = time.perf_counter() - t
    t_naive = t_naive_part * (H * W) / steps
    t = time.perf_counter()
    b = fast.cached_sample(model, zeros.clone(), mask, noise)
    t_cached = time.perf_counter() - t
    same = torch.equal(a.flatten(1)[:, :steps], b.flatten(1)[:, :steps])
    print("| sampler | seconds for 64 images | ratio |")
    print("|---|---|---|")
    print(f"| naive (one full pass per pixel; {steps} of {H * W} steps timed, scaled) | {t_naive:.1f} | 1.0 |")
    print(f"| cached (vertical stack per row, one column per pixel) | {t_cached:.2f} | {t_naive / t_cached:.1f}x |")
    print(f"\nIdentical draws on the timed pixels: {same}")


@torch.no_grad()
def local_change(model, device, K=256):
    print(f"\n### One-pixel change, {K} candidate values of the middle pixel: local vs full re-evaluation\n")
    C, H, W = model.shape
    x = model.sample(1)
    cache = fast.Cache(model, x)
    r, c = H // 2, W // 2
    vals = torch.arange(K, device=device) % model.levels

    def full():
        xs = x.expand(K, -1, -1, -1).clone()
        xs[:, 0, r, c] = vals
        return model.log_prob(xs)

    def local():
        return fast.local_logits(cache, r, c, vals)

    full(), local()
    t_full, t_local = timeit(full), timeit(local)
    print("| evaluation | seconds per candidate | candidates per second | ratio |")
    print("|---|---|---|---|")
    print(f"| full forward pass | {t_full / K:.2e} | {K / t_full:.0f} | 1.0 |")
    print(f"| local (future receptive field only) | {t_local / K:.2e} | {K / t_local:.0f} | {t_full / t_local:.1f}x |")
    out = local()
    print(f"\nWindow re-evaluated: rows {out['rect'][0]}-{out['rect'][1] - 1}, columns {out['rect'][2]}-{out['rect'][3] - 1} "
          f"({(out['rect'][1] - out['rect'][0]) * (out['rect'][3] - out['rect'][2])} of {H * W} positions at the head).")


def queries(model, device, digit):
    print("\n### Queries a, b, c, e, f on the shipped model (one test digit)\n")
    print("| question | method | model evaluations | seconds | answer summary |")
    print("|---|---|---|---|---|")
    cases = [
        ("a first pixel", dict(target=pp.first_pixel), "exact", {}),
        ("b middle pixel (256 samples)", dict(target=pp.middle_pixel), "ancestral", dict(num_samples=256)),
        ("c middle given top half", dict(observe=pp.top_half(digit), target=pp.middle_pixel), "exact", {}),
        ("e middle given the rest", dict(observe=(~pp.middle_pixel)(digit), target=pp.middle_pixel), "exact", {}),
        ("f bottom half given top half (16 samples)", dict(observe=pp.top_half(digit), target=pp.bottom_half),
         "ancestral", dict(num_samples=16)),
    ]
    for name, kw, method, opts in cases:
        r = pp.query(model, method=method, **kw, **opts)
        ans = f"mean level {float(r.mean().float().mean()):.1f}"
        print(f"| {name} | {method} | {r.num_model_evals:,} | {r.elapsed:.2f} | {ans} |")
    print("\nEvaluations: one per image through a full forward pass (a cached ancestral sample counts as one), "
          "one per candidate value in a local re-evaluation.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pixelcnn-mnist")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sections", default="throughput,sampling,local,queries")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}")
    sec = a.sections.split(",")
    if "throughput" in sec:
        throughput(a.device)
    model = pp.load(a.model, device=a.device)
    if "sampling" in sec:
        sampling(model, a.device)
    if "local" in sec:
        local_change(model, a.device)
    if "queries" in sec:
        from pixelprob.data import shipped_digits
        queries(model, a.device, shipped_digits()[0][0].long().to(a.device))


if __name__ == "__main__":
    main()
