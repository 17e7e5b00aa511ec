"""A result's ArviZ side: ``az.summary``, trace and rank plots, saving to netCDF.

Every sampling method puts its draws in ``result.inference_data`` (an
``arviz.InferenceData``). For ``method="gibbs"`` the posterior group holds

* ``rb_probs`` (chain, draw, image, level): the middle pixel's exact full
  conditional p(x_m | x_-m) at each kept sweep -- its mean over draws is the
  Rao-Blackwellised answer;
* ``target`` (chain, draw, image, target_pixel): the sampled target values;
* ``log_joint`` and ``num_on``: log p(x) of the state and the number of bright
  hidden pixels, scalar summaries that show mixing;

and sample_stats holds the acceptance rate and model evaluations per draw.

    python examples/arviz_result.py --out figs

At the default budget the chains disagree: this digit's middle pixel can be
dark or bright, and short chains can sit in different modes.
The summary's R-hat (far above 1.01) and bulk ESS show it, and so do the
trace and rank plots. Run more sweeps (``--sweeps``) for a converged answer.
"""
import argparse
import warnings
from pathlib import Path

import arviz as az

import pixelprob as pp
from pixelprob.data import shipped_digits


def main(argv=None):
    ap = argparse.ArgumentParser(description="ArviZ summary, plots and netCDF of a Gibbs result")
    ap.add_argument("--model", default="pixelcnn-mnist")
    ap.add_argument("--digit", type=int, default=7)
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny budget")
    ap.add_argument("--out", default="arviz_out", help="folder for the plots and the .nc file")
    a = ap.parse_args(argv)
    if a.quick:
        a.sweeps, a.chains = 4, 2

    model = pp.load(a.model, device="cpu")
    digit = shipped_digits()[0][a.digit].long()
    # the middle pixel given everything outside a 4x4 patch: a small posterior that mixes in seconds
    patch = pp.rect(12, 16, 12, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: the R-hat/ESS warning is shown in the summary below
        r = pp.query(model, observe=(~patch)(digit), target=pp.middle_pixel, method="gibbs", variant="pruned",
                     num_samples=a.sweeps, warmup=a.sweeps // 2, chains=a.chains)
    idata = r.inference_data
    print(idata)

    # the three likeliest levels of the middle pixel, and the scalar summaries
    top = [int(v) for v in r.probs.argsort(descending=True)[:3]]
    summary = az.summary(idata, var_names=["rb_probs", "log_joint", "num_on"],
                         coords={"image": [0], "level": top})
    print(summary.to_string())  # mean, sd, HDI, MCSE, bulk/tail ESS and R-hat of each quantity
    print(f"library diagnostics: max R-hat {r.diagnostics['max_rhat']:.3f}, "
          f"min bulk ESS {r.diagnostics['min_ess_bulk']:.0f}, min tail ESS {r.diagnostics['min_ess_tail']:.0f}")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pp.plot_trace(r, out / "trace.png")
    pp.plot_rank(r, out / "rank.png")
    idata.to_netcdf(str(out / "gibbs.nc"))
    back = az.from_netcdf(str(out / "gibbs.nc"))
    print(f"saved {out / 'trace.png'}, {out / 'rank.png'} and {out / 'gibbs.nc'} "
          f"(groups {list(back.groups())})")
    return r, summary


if __name__ == "__main__":
    main()
