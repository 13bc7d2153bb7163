"""Benchmark: effective samples per second of the Bayesian DID, ours against Bambi's defaults,
on the demo panel (287 cities × 12 years, SIMULATED).

    python benchmarks/bench_did.py [--draws 1000] [--tune 1000] [--chains 4]

Both fit the same specification on the same standardised data: y ~ D + controls (+ the unit means
of D and the controls when models/did.toml has ``unit_means = true``) + (1|city) + C(year).
Ours: :func:`bayes_nqp.fit` ("did": unit effects integrated out, nutpie). Bambi: default priors and
its default ``model.fit()`` sampler, with the same draws, tune and chains. Wall time *includes*
building and compiling the model (and, for ours, drawing α and the diagnostics; no LOO, PPC or
power-scaling); library imports happen before either clock starts.

ESS is bulk ESS (ArviZ) of τ and the minimum over every scalar in each posterior (ours: the free
parameters and the α drawn afterwards; Bambi: every stored parameter, unit effects included).
Prints a table and writes benchmarks/results/did.json {date, machine, settings, ours, bambi,
ratio}. Target: ours ≥ 30× Bambi on the minimum ESS per second, with R-hat ≤ 1.01 everywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "did.json"
TARGET = 30.0


def posterior_stats(posterior, tau_var: str) -> dict:
    """Bulk ESS of τ, minimum bulk ESS and maximum R-hat over every scalar of a posterior."""
    import arviz_stats as azs

    ds = posterior.to_dataset() if hasattr(posterior, "to_dataset") else posterior
    ds = ds[[v for v in ds.data_vars if {"chain", "draw"} <= set(ds[v].dims)]].astype(float)
    ess, rhat = azs.ess(ds, method="bulk"), azs.rhat(ds)
    flat_ess = {f"{v}[{i}]": x for v in ds.data_vars
                for i, x in enumerate(np.atleast_1d(ess[v].to_numpy()).ravel())}
    flat_rhat = np.concatenate([np.atleast_1d(rhat[v].to_numpy()).ravel() for v in ds.data_vars])
    worst = min(flat_ess, key=flat_ess.get)
    return {"ess_tau": float(ess[tau_var]), "ess_min": float(flat_ess[worst]), "ess_min_param": worst,
            "rhat_max": float(np.nanmax(flat_rhat)), "n_scalars": len(flat_ess)}


def run_ours(panel, draws, tune, chains, seed, options=None) -> dict:
    """``options``: spec options over models/did.toml (e.g. the previous default, to compare)."""
    from dataclasses import replace

    import bayes_nqp as bn
    from bayes_nqp.bayes.spec import load_spec

    spec = load_spec("did")
    spec = replace(spec, options={**spec.options, **(options or {})})
    t0 = time.perf_counter()
    fit = bn.fit("did", panel, spec=spec, draws=draws, tune=tune, chains=chains, seed=seed,
                 replication=False, loo=False, ppc=False, psense=False)
    seconds = time.perf_counter() - t0
    post = fit.idata["posterior"].to_dataset()
    free = ["mu", "gamma", "beta", "tau_z", "lambda", "sigma", "sigma_unit", "sigma_time", "alpha",
            "sigma_effect", "rho", "tau_unit_z"]
    out = posterior_stats(post[[v for v in free if v in post]], "tau_z")
    tau = fit.draws["tau"].ravel()
    return {"seconds": seconds, "tau_mean": float(tau.mean()), "tau_sd": float(tau.std(ddof=1)),
            "sampler": "nutpie (numba), unit effects marginalised", **out}


def bambi_frame(panel):
    """The data as our model sees them (standardised outcome and controls, unit means)."""
    from bayes_nqp.bayes.fit import make_model

    m = make_model("did", panel)
    df = {"y": m.y_z, "D": m.D, "city": panel.df["unit"].astype(str).to_numpy(),
          "year": panel.df["time"].astype(str).to_numpy()}
    names = {}
    for j, c in enumerate(panel.controls):
        names[c] = f"x{j}"
        df[f"x{j}"] = m.X_z[:, j]
    lam = next((b for b in m.design if b.name == "lambda"), None)
    if lam is not None:
        for j in range(lam.cols.shape[1]):
            df[f"m{j}"] = lam.cols[:, j]
    import pandas as pd

    frame = pd.DataFrame(df)
    rhs = ["D", *[c for c in frame if c[0] in "xm" and c[1:].isdigit()]]
    return frame, f"y ~ {' + '.join(rhs)} + (1|city) + C(year)", m.y_sd


def run_bambi(panel, draws, tune, chains, seed) -> dict:
    import bambi as bmb

    frame, formula, y_sd = bambi_frame(panel)
    t0 = time.perf_counter()
    model = bmb.Model(formula, frame)
    idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False)
    seconds = time.perf_counter() - t0
    out = posterior_stats(idata["posterior"], "D")
    tau = idata["posterior"]["D"].to_numpy().ravel() * y_sd
    divergences = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    return {"seconds": seconds, "tau_mean": float(tau.mean()), "tau_sd": float(tau.std(ddof=1)),
            "sampler": "Bambi default (model.fit(): PyMC NUTS)", "formula": formula,
            "divergences": divergences, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20250601)
    ap.add_argument("--ours-only", action="store_true",
                    help="time ours under the current default and the previous one (common effect, "
                         "iid errors, pooled year effects) on the same machine state; no Bambi")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    for mod in ("pymc", "nutpie", "bambi", "arviz_stats"):  # imports are not part of either timing
        importlib.import_module(mod)
    import bayes_nqp as bn

    panel = bn.demo_panel()
    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed)
    if args.ours_only:
        import json

        res = {}
        for label, opts in (("previous_default", {"effect": "common", "errors": "iid", "year_effects": "pooled"}),
                            ("default", {}), ("previous_default_again", {"effect": "common", "errors": "iid",
                                                                         "year_effects": "pooled"}),
                            ("default_again", {})):
            res[label] = run_ours(panel, **kw, options=opts)
            print(label, json.dumps({k: res[label][k] for k in ("seconds", "ess_min", "ess_min_param",
                                                                 "rhat_max", "tau_mean", "tau_sd")}))
        from bayes_nqp.results import write_json

        write_json(OUT.with_name("did_defaults.json"),
                   {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": "shared 2-core development machine (other work running)",
                    "settings": vars(args), **res})
        return
    ours = run_ours(panel, **kw)
    theirs = run_bambi(panel, **kw)
    for r in (ours, theirs):
        r["ess_tau_per_s"] = r["ess_tau"] / r["seconds"]
        r["ess_min_per_s"] = r["ess_min"] / r["seconds"]
    ratio = {"ess_tau_per_s": ours["ess_tau_per_s"] / theirs["ess_tau_per_s"],
             "ess_min_per_s": ours["ess_min_per_s"] / theirs["ess_min_per_s"]}
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    met = ratio["ess_min_per_s"] >= TARGET and ours["rhat_max"] <= 1.01
    from bayes_nqp.results import write_json

    write_json(OUT, {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine, "panel": repr(panel), "settings": vars(args),
                     "ours": ours, "bambi": theirs, "ratio": ratio, "target_ratio": TARGET,
                     "target_met": met,
                     "note": "wall time includes model building and compilation; SIMULATED demo panel"})
    rows = [("seconds (incl. compile)", "seconds", ".1f"), ("τ mean", "tau_mean", ".4f"),
            ("τ sd", "tau_sd", ".4f"), ("bulk ESS τ", "ess_tau", ".0f"),
            ("min bulk ESS", "ess_min", ".0f"), ("R-hat max", "rhat_max", ".4f"),
            ("ESS τ / s", "ess_tau_per_s", ".1f"), ("min ESS / s", "ess_min_per_s", ".2f")]
    print(f"{'':26}{'ours':>12}{'bambi':>12}")
    for label, key, fmt in rows:
        print(f"{label:26}{ours[key]:>12{fmt}}{theirs[key]:>12{fmt}}")
    print(f"worst parameter: ours {ours['ess_min_param']}, bambi {theirs['ess_min_param']}")
    print(f"ratio (ours / bambi): ESS τ per s {ratio['ess_tau_per_s']:.1f}×, "
          f"min ESS per s {ratio['ess_min_per_s']:.1f}× (target ≥ {TARGET:g}×: "
          f"{'met' if met else 'NOT met'}); wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
