"""The main job and the query CLI, end to end on the shipped weights."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pixelprob as pp
from pixelprob.data import shipped_digits


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "pixelprob.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_writes_report_with_every_figure(demo_dir):
    out, stdout = demo_dir
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(figures) >= 12
    for f in figures:
        assert (out / f).stat().st_size > 1000, f
    # self-contained: every figure is embedded in the HTML
    assert html.count("data:image/png;base64,") == len(figures)
    for q in "abcdefg":
        assert f"question {q}" in md
    assert "model evaluations" in md
    assert "report:" in stdout and "answer" in stdout


def test_demo_numbers_equal_the_api(demo_dir):
    out, _ = demo_dir
    answers = json.loads((out / "answers.json").read_text())
    img = shipped_digits()[0][0].long()
    model = pp.load("pixelcnn-mnist", device="cpu")
    c = next(a for a in answers if a["model"] == "pixelcnn" and a["question"] == "c")
    r = pp.query(model, observe=pp.top_half(img), target=pp.middle_pixel, method="exact", seed=0)
    assert torch.allclose(torch.tensor(c["probs"], dtype=torch.float64), r.probs, atol=1e-9)
    b = next(a for a in answers if a["model"] == "pixelcnn" and a["question"] == "b")
    r = pp.query(model, target=pp.middle_pixel, method="ancestral", num_samples=32, seed=0)
    assert torch.allclose(torch.tensor(b["probs"], dtype=torch.float64), r.probs, atol=1e-6)
    md = (out / "report.md").read_text()
    assert f"{c['num_model_evals']:,} model evaluations" in md


def test_query_cli_json_matches_api(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pixelprob.cli", "query", "--model", "pixelcnn-mnist",
                           "--image", "test:7", "--observe", "top_half", "--target", "middle_pixel",
                           "--method", "exact", "--json", "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    img = shipped_digits()[0][7].long()
    r = pp.query(pp.load("pixelcnn-mnist", device="cpu"), observe=pp.top_half(img), target=pp.middle_pixel,
                 method="exact")
    assert d["method"] == "exact" and d["exact"] is True
    assert torch.allclose(torch.tensor(d["probs"], dtype=torch.float64), r.probs, atol=1e-9)
    assert (tmp_path / "answer.png").exists()


def test_query_cli_bad_region_is_clear():
    proc = subprocess.run([sys.executable, "-m", "pixelprob.cli", "query", "--observe", "left_half",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "unknown region name 'left_half'" in proc.stderr
