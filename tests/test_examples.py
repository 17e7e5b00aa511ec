"""The examples run, and the docs stay true to the code.

Each example runs as a user would run it (a subprocess, shipped weights, small
budgets). The fast ones run in CI; training, the illegal-mask experiment and
the heavier query scripts are marked slow (``pytest -m slow``). The method
option tables of docs/api.md are checked against the registered signatures,
and ``pytest -m slow`` also executes every Python snippet in docs/.
"""
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pixelprob as pp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"


def run(script, *args, timeout=600, env=None):
    e = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), MPLBACKEND="Agg")
    e.update(env or {})
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


needs_pixelcnn = pytest.mark.skipif("pixelcnn-mnist" not in pp.shipped(), reason="shipped PixelCNN missing")
needs_vae = pytest.mark.skipif("vae-mnist" not in pp.shipped(), reason="shipped VAE missing")


@needs_pixelcnn
def test_exact_queries(tmp_path):
    out = run("exact_queries.py", "--out", tmp_path)
    for q in ("a ", "c ", "e "):
        assert any(line.startswith(q) and "exact=True" in line for line in out.splitlines()), out
    assert {p.name for p in tmp_path.iterdir()} == {"a.png", "c.png", "e.png"}


@needs_pixelcnn
def test_monte_carlo_quick(tmp_path):
    out = run("monte_carlo.py", "--quick", "--out", tmp_path)
    assert "b  p(x_middle)" in out and "f  2 completions" in out, out
    assert (tmp_path / "b.png").exists() and (tmp_path / "f.png").exists()


@needs_pixelcnn
def test_arviz_result_quick(tmp_path):
    out = run("arviz_result.py", "--quick", "--out", tmp_path)
    assert "ess_bulk" in out and "r_hat" in out, out  # the az.summary table
    for f in ("trace.png", "rank.png", "gibbs.nc"):
        assert (tmp_path / f).exists(), f
    import arviz as az
    idata = az.from_netcdf(str(tmp_path / "gibbs.nc"))
    assert "rb_probs" in idata.posterior and idata.posterior.sizes["chain"] == 2


@needs_vae
@pytest.mark.slow
def test_vae_queries_quick():
    out = run("vae_queries.py", "--quick")
    for q in "abcdefg":
        assert any(line.startswith(q + "  ") for line in out.splitlines()), (q, out)


@needs_pixelcnn
@pytest.mark.slow
def test_hard_queries_quick(tmp_path):
    out = run("hard_queries.py", "--quick", "--out", tmp_path)
    for label in ("patch gibbs-exact", "patch gibbs-mh", "patch gibbs-pruned", "d importance", "d gibbs-mh",
                  "d gibbs-pruned", "d svi", "g importance", "g gibbs-mh", "g svi"):
        assert label in out, (label, out)
    assert (tmp_path / "g-inpaintings.png").exists()


@pytest.mark.slow
def test_train_pixelcnn_quick(tmp_path, data_root):
    out = run("train_pixelcnn.py", "--quick", "--data", data_root, "--out", tmp_path / "run", timeout=1800)
    assert (tmp_path / "run" / "best.pt").exists() and "validation bpd per epoch" in out, out


@pytest.mark.slow
def test_illegal_mask_quick(tmp_path, data_root):
    out = run("illegal_mask.py", "--quick", "--data", data_root, "--out", tmp_path / "fig.png", timeout=1800)
    pairs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s.*pairs\s+(\d+)", out, re.M)}
    assert pairs["legal"] == 0 and pairs["center"] > 0 and pairs["below"] > 0, out
    assert (tmp_path / "fig.png").exists()


# ----------------------------------------------------------------------------- docs


def _api_tables():
    """``{(kind, method): {option names}}`` from the method tables of docs/api.md."""
    text = (DOCS / "api.md").read_text()
    out = {}
    for kind, heading in (("pixelcnn", "### PixelCNN"), ("vae", "### VAE")):
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        for line in section.splitlines():
            m = re.match(r"\| `(\w+)` \| (.*?) \|", line)
            if m:
                out[(kind, m.group(1))] = set(re.findall(r"`(\w+)`", m.group(2)))
    return out


def test_api_doc_lists_every_method_option():
    from pixelprob.infer import METHODS, load_methods

    load_methods()
    documented = _api_tables()
    for name, method in METHODS.items():
        for kind, impl in method.impls.items():
            params = list(inspect.signature(impl.solve).parameters)[4:]  # after model, images, observed, target
            options = set(params) - {"num_samples"}
            assert (kind, name) in documented, f"docs/api.md has no row for {kind} method {name!r}"
            assert documented[(kind, name)] == options, (
                f"docs/api.md lists {sorted(documented[(kind, name)])} for {kind} {name!r}; "
                f"the code takes {sorted(options)}")
    registered = {(k, n) for n, m in METHODS.items() for k in m.impls}
    assert set(documented) <= registered, f"docs/api.md documents unregistered methods {set(documented) - registered}"


def _pages():
    return [md.name for md in sorted(DOCS.glob("*.md")) if "```python" in md.read_text()]


@pytest.mark.slow
@pytest.mark.parametrize("doc", _pages())
def test_doc_snippets_run(doc, tmp_path, monkeypatch):
    """The ``python`` blocks of each docs page run, in order, sharing one namespace (as a reader would)."""
    import warnings

    monkeypatch.chdir(tmp_path)  # snippets that save figures write here
    ns = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small budgets: R-hat / ESS / k-hat warnings are expected
        for block in re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), re.S):
            if "register(" in block:
                continue  # the method template, with `...` for the reader to fill in
            exec(compile(block, doc, "exec"), ns)
