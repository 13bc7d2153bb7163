"""Benchmark: honest uncertainty of the Bayesian did on real public panels (issue 13).

    python benchmarks/bench_honest.py [--part sd|placebo|all] [--n 40] [--configs before,after]
                                      [--panels castle,munnell] [--draws 500] [--chains 2]
                                      [--model did|heterogeneity|event_study|staggered]

Panels (real data shipped by PyPI packages; not this project's):

* ``castle``: Cheng & Hoekstra (2013), castle-doctrine laws, 50 US states × 2000–2010, from
  ``causaldata`` (``causaldata.castle``): outcome ``l_homicide`` (log homicides per 100,000),
  treatment ``post`` (absorbing), unit ``sid``, time ``year``. Placebo pool: the 29 never-treated
  states (the treated states are dropped). Group (heterogeneity): ``poverty`` = the state's mean
  poverty rate above or below the median state's.
* ``munnell``: Munnell (1990), public capital in 48 US states × 1970–1986, from
  ``linearmodels.datasets.munnell``: outcome log(``gsp``), unit ``state``, time ``year``. No real
  treatment: every state may get a placebo adoption; the sd comparison uses placebo seed 0.

Part ``sd`` (``--model staggered``: the posterior sd of ``att`` beside diff-diff's imputation and
Callaway–Sant'Anna SEs; panel ``demo`` adds whether att's 95% HDI covers the simulated truth;
results under ``sd_by_model``): posterior sd of τ under the weak prior set against the frequentist SE of the
matching estimand (TWFE with unit-clustered CRV1 SE for the common effect; the mean of the
unit-specific effects of the fully interacted regression with its between-unit SE for
unit-varying effects); target ratio 0.75–1.4.

Part ``placebo``: Bertrand–Duflo–Mullainathan placebo laws (:func:`bayes_nqp.data.placebo.
assign_placebo`): share of the ``n`` placebo panels whose 95% HDI of τ excludes 0, next to TWFE
with iid and with unit-clustered SEs on the same panels. One compilation per configuration serves
all the placebo panels (the likelihood's statistics are ``pm.Data``; ``compiled.with_data``).

Configurations: ``before`` = the previous default (common effect, iid errors, pooled year
effects); ``after`` = the current default of models/did.toml (of the model's own spec with
``--model``); ``unit_ar1`` = unit effects and AR(1) errors; ``common`` = common effect, iid errors,
fixed year effects; ``ar1`` = AR(1) errors only. Staggered's previous model (``method =
"imputation"``): ``imputation`` = its previous default (mean imputation, iid errors, pooled
years); ``imputation_ar1``, ``imputation_predictive`` (the sample ATT), ``imputation_predictive_ar1``,
``imputation_fixed_years`` (``year_effects = "fixed"``), ``imputation_fixed_years_predictive``,
``imputation_fixed_years_ar1``.

A model class's ``placebo_options`` (:func:`bayes_nqp.calibration.placebo_spec`) are applied to
every placebo refit: staggered's ``cohort_levels = "panel"`` (a cohort indicator and a cell
effect for every period) gives all placebo timings of a panel one model structure, so the engine's cache compiles it once and swaps the data in.

Writes benchmarks/results/honest.json. The machine is shared (2 cores, other work running):
timings are indicative only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "honest.json"

CONFIGS = {
    "before": {"effect": "common", "errors": "iid", "year_effects": "pooled"},
    "after": {},
    "unit_ar1": {"effect": "unit", "errors": "ar1"},
    "common": {"effect": "common", "errors": "iid", "year_effects": "fixed"},
    # AR(1) errors alone
    "ar1": {"errors": "ar1"},
    # staggered's previous model (method = "imputation", bayes/staggered_imputation.py) and its
    # variants: the previous default (mean imputation, iid errors, pooled years), AR(1) errors,
    # the posterior of the sample ATT (a noise draw of y(0) per treated cell), fixed wide years
    "imputation": {"method": "imputation", "year_effects": "pooled"},
    "imputation_ar1": {"method": "imputation", "year_effects": "pooled", "errors": "ar1"},
    "imputation_predictive": {"method": "imputation", "year_effects": "pooled", "imputation": "predictive"},
    "imputation_predictive_ar1": {"method": "imputation", "year_effects": "pooled",
                                  "imputation": "predictive", "errors": "ar1"},
    "imputation_fixed_years": {"method": "imputation", "year_effects": "fixed"},
    "imputation_fixed_years_predictive": {"method": "imputation", "year_effects": "fixed",
                                          "imputation": "predictive"},
    "imputation_fixed_years_ar1": {"method": "imputation", "year_effects": "fixed", "errors": "ar1"},
}


def raw_panel(name: str):
    """(raw frame, column map dict, placebo options) of a benchmark panel."""
    if name == "castle":
        import causaldata

        d = causaldata.castle.load_pandas().data[["sid", "year", "l_homicide", "post", "poverty"]].copy()
        d["post"] = d["post"].astype(int)
        # a time-invariant group for the heterogeneity model: the state's mean poverty rate above
        # or below the median state's (any fixed labelling is valid under placebo laws)
        pov = d.groupby("sid")["poverty"].transform("mean")
        d["poverty_group"] = np.where(pov > pov.groupby(d["sid"]).first().median(), "high", "low")
        d = d.drop(columns="poverty")
        return d, {"unit": "sid", "time": "year", "outcome": "l_homicide", "treated": "post",
                   "groups": {"poverty": "poverty_group"}}, \
            {"unit": "sid", "time": "year", "treated": "post", "pool": "never"}
    if name == "munnell":
        from linearmodels.datasets import munnell

        d = munnell.load().rename(columns={"STATE": "state", "YR": "year", "GSP": "gsp"})
        d = d[["state", "year", "gsp"]].copy()
        d["l_gsp"] = np.log(d["gsp"])
        return d, {"unit": "state", "time": "year", "outcome": "l_gsp"}, \
            {"unit": "state", "time": "year", "pool": "all"}
    raise SystemExit(f"unknown panel {name}")


def placebo_panel(name: str, seed: int):
    from bayes_nqp.data.panel import panel_from_frame
    from bayes_nqp.data.placebo import assign_placebo

    raw, cmap, opts = raw_panel(name)
    p = assign_placebo(raw, rng=np.random.default_rng(seed), **opts)
    cmap = {k: v for k, v in cmap.items() if k != "treated"}
    cmap["treated"] = p.column
    return panel_from_frame(p.frame, cmap, source=f"{name} placebo seed {seed}"), p


def real_panel(name: str):
    from bayes_nqp.data.panel import panel_from_frame

    raw, cmap, _ = raw_panel(name)
    if "treated" not in cmap:
        return placebo_panel(name, 0)[0]
    return panel_from_frame(raw, cmap, source=name)


def spec_for(config: str, model: str = "did"):
    from bayes_nqp.bayes.spec import load_spec

    spec = load_spec(model)
    return replace(spec, options={**spec.options, **CONFIGS[config]})


def headline(model: str) -> str:
    """The estimand a placebo panel checks: the spec's declared headline (``[model]``)."""
    from bayes_nqp import registry

    return registry.info(model).headline


def frequentist(panel) -> dict:
    from bayes_nqp.frequentist.did import twfe
    from bayes_nqp.frequentist.unit_effects import mean_unit_effect

    f = twfe(panel, controls=False)
    iid = __import__("bayes_nqp.frequentist._fe", fromlist=["feols"]).feols(
        panel.df, "y", ["D"], vcov="iid")
    u = mean_unit_effect(panel, controls=False)
    return {"twfe": float(f.coef()["D"]), "twfe_se_crv1": float(f.se()["D"]),
            "twfe_p_crv1": float(f.pvalue()["D"]), "twfe_se_iid": float(iid.se()["D"]),
            "twfe_p_iid": float(iid.pvalue()["D"]),
            "unit_mean": u["estimate"], "unit_mean_se": u["se"], "unit_mean_p": u.get("pvalue")}


def part_sd(panels, configs, draws, chains) -> dict:
    import bayes_nqp as bn

    out = {}
    for name in panels:
        panel = real_panel(name)
        freq = frequentist(panel)
        rows = {}
        for cfg in configs:
            t0 = time.perf_counter()
            spec = spec_for(cfg)
            fit = bn.fit("did", panel, priors="weak", spec=spec, draws=draws, tune=draws, chains=chains,
                         seed=1, replication=False, loo=False, ppc=False, psense=False)
            e = fit.params["tau"]
            unit = spec.options.get("effect", "unit") == "unit"
            ref_se = freq["unit_mean_se"] if unit else freq["twfe_se_crv1"]
            ref = freq["unit_mean"] if unit else freq["twfe"]
            post = fit.idata["posterior"]
            rows[cfg] = {"options": spec.options, "tau_mean": e["mean"], "tau_sd": e["sd"],
                         "hdi95": e["hdi95"], "p_positive": e["p_positive"],
                         "matching_estimand": "unit_mean" if unit else "twfe",
                         "frequentist": ref, "frequentist_se": ref_se, "sd_ratio": e["sd"] / ref_se,
                         "mean_gap_in_se": (e["mean"] - ref) / ref_se,
                         "rho_mean": float(post["rho"].mean()) if "rho" in post else None,
                         "sigma_effect_mean": float(post["sigma_effect"].mean() * fit_ysd(fit, panel))
                         if "sigma_effect" in post else None,
                         "passed": fit.passed, "ess_bulk_min": fit.diag.get("ess_bulk_min"),
                         "seconds": time.perf_counter() - t0}
            logging.info("%s %s %s", name, cfg, rows[cfg])
        out[name] = {"frequentist": freq, "bayesian": rows}
    return out


def part_sd_staggered(panels, configs, draws, chains) -> dict:
    """Staggered: posterior sd of ``att`` under the weak prior set beside diff-diff's imputation
    (Borusyak–Jaravel–Spiess) and Callaway–Sant'Anna SEs (unit-clustered), on the real panel;
    panel ``demo`` (simulated) also checks that att's 95% HDI covers data/demo_truth.json's att."""
    import bayes_nqp as bn
    from bayes_nqp.frequentist.event_study import borusyak_jaravel_spiess, callaway_santanna

    out = {}
    for name in panels:
        panel = bn.demo_panel() if name == "demo" else real_panel(name)
        bjs = borusyak_jaravel_spiess(panel)[0]["overall"]
        cs = callaway_santanna(panel)[0]["overall"]
        freq = {"imputation": {k: bjs[k] for k in ("estimate", "se", "ci95")},
                "callaway_santanna": {k: cs[k] for k in ("estimate", "se", "ci95")}}
        truth = None
        if name == "demo":
            from bayes_nqp.data import DATA_DIR

            truth = json.loads((DATA_DIR / "demo_truth.json").read_text())["att"]
        rows = {}
        for cfg in configs:
            t0 = time.perf_counter()
            spec = spec_for(cfg, "staggered")
            fit = bn.fit("staggered", panel, priors="weak", spec=spec, draws=draws, tune=draws,
                         chains=chains, seed=1, replication=False, loo=False, ppc=False, psense=False)
            e = fit.params["att"]
            post = fit.idata["posterior"]
            rows[cfg] = {"options": spec.options, "att_mean": e["mean"], "att_sd": e["sd"],
                         "hdi95": e["hdi95"],
                         "sd_ratio_imputation": e["sd"] / bjs["se"],
                         "sd_ratio_callaway_santanna": e["sd"] / cs["se"],
                         "mean_gap_in_imputation_se": (e["mean"] - bjs["estimate"]) / bjs["se"],
                         "sigma_effect_mean": float(post["sigma_effect"].mean()) * fit_ysd(fit, panel)
                         if "sigma_effect" in post else None,
                         "rho_mean": float(post["rho"].mean()) if "rho" in post else None,
                         "passed": fit.passed, "ess_bulk_min": fit.diag.get("ess_bulk_min"),
                         "rhat_max": fit.diag.get("rhat_max"), "seconds": time.perf_counter() - t0}
            if truth is not None:
                rows[cfg] |= {"truth_att": truth,
                              "hdi95_covers_truth": bool(e["hdi95"][0] <= truth <= e["hdi95"][1])}
            logging.info("staggered sd %s %s %s", name, cfg, rows[cfg])
        out[name] = {"frequentist": freq, "bayesian": rows}
    return out


def fit_ysd(fit, panel) -> float:
    return float(np.std(panel.df["y"].to_numpy(float)))


def part_placebo(panels, configs, n, draws, chains, model: str = "did") -> dict:
    """False-positive rate of the 95% HDI of ``model``'s headline estimand (did: tau;
    heterogeneity: its average tau; event_study: att_post; staggered: att) on ``n`` placebo panels,
    beside TWFE (the static D coefficient) with iid and unit-clustered SEs on the same panels.

    A model whose likelihood statistics are ``pm.Data`` (the two-way models) is compiled once and
    refitted with ``with_data`` while the statistics' shapes and the coordinates stay the same;
    any other model goes through the engine's compiled-model cache (constants lifted)."""
    from arviz_stats.base import array_stats

    from bayes_nqp.bayes.fit import compile_model, make_model, sample
    from bayes_nqp.bayes.refit import with_data
    from bayes_nqp.calibration import placebo_spec, wilson
    from bayes_nqp.engine import compiled_model

    target = headline(model)
    out = {}
    for name in panels:
        reps = [placebo_panel(name, seed) for seed in range(1, n + 1)]
        freq = [frequentist(p) for p, _ in reps]
        res = {"twfe_iid_rate": float(np.mean([f["twfe_p_iid"] < 0.05 for f in freq])),
               "twfe_cluster_rate": float(np.mean([f["twfe_p_crv1"] < 0.05 for f in freq])),
               "unit_mean_rate": float(np.mean([(f["unit_mean_p"] or 1) < 0.05 for f in freq])),
               "n": n, "model": model, "estimand": target, "configs": {}}
        for cfg in configs:
            t0 = time.perf_counter()
            # with the model's placebo options (staggered: a cohort mean for every period, so
            # that every placebo timing is one model structure)
            spec = placebo_spec(model, spec_for(cfg, model))
            cache, compilations = {}, 0  # one compilation per shape/coordinates of the statistics
            rows = []
            for seed, (panel, pl) in enumerate(reps, start=1):
                m = make_model(model, panel, "weak", spec)
                if hasattr(m, "likelihood_data"):
                    data = m.likelihood_data()
                    this_key = (repr({k: np.shape(v) for k, v in data.items()}),
                                repr({k: v for k, v in m.coords().items() if k not in ("obs",)}))
                    if this_key not in cache:
                        pm_model, this = compile_model(m)
                        cache[this_key] = (pm_model, this)
                        compilations += 1
                    else:
                        pm_model, compiled = cache[this_key]
                        this = with_data(compiled, {f"stat__{k}": v for k, v in data.items()})
                else:
                    pm_model = m.build()
                    this, reused = compiled_model(pm_model, cache_key=model)
                    compilations += not reused
                settings = m.spec.sampler.override(draws=draws, tune=draws, chains=chains, seed=seed)
                idata = sample(this, settings)
                idata = m.postprocess(idata, pm_model)
                est = np.asarray(m.estimands(idata)[target]).ravel()
                lo, hi = array_stats.hdi(est, prob=0.95)
                rows.append({"seed": seed, "placebo_units": [str(u) for u in pl.units],
                             "estimate": float(est.mean()), "sd": float(est.std()),
                             "hdi95": [float(lo), float(hi)], "excludes_zero": bool(lo > 0 or hi < 0)})
            k = sum(r["excludes_zero"] for r in rows)
            rate = k / n
            res["configs"][cfg] = {"options": spec.options, "false_positive_rate": rate,
                                   # Wilson 95% interval of the false-positive rate
                                   "false_positive_ci95": wilson(k, n),
                                   "seconds": time.perf_counter() - t0, "compilations": compilations,
                                   "replicates": rows}
            logging.info("%s %s %s placebo rate %.3f (%d/%d) in %.0fs", model, name, cfg, rate, k, n,
                         time.perf_counter() - t0)
        out[name] = res
    return out


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=("sd", "placebo", "all"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--configs", default="before,after")
    ap.add_argument("--panels", default="castle,munnell")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--sd-draws", type=int, default=1000)
    ap.add_argument("--sd-chains", type=int, default=4)
    ap.add_argument("--model", default="did",
                    help="placebo part: the model whose headline estimand is checked (did's results "
                         "go under 'placebo', any other model's under 'placebo_by_model')")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pymc", "pytensor", "bayes_nqp", "nutpie"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    panels, configs = a.panels.split(","), a.configs.split(",")
    out_path = Path(a.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "machine": "shared 2-core development machine (other work running)"})
    if a.part in ("sd", "all") and a.model == "staggered":
        result.setdefault("sd_by_model", {}).setdefault("staggered", {}).update(
            part_sd_staggered(panels, configs, a.sd_draws, a.sd_chains))
        result["sd_by_model"]["staggered"]["settings"] = {"draws": a.sd_draws, "chains": a.sd_chains,
                                                          "priors": "weak", "date": result["date"]}
    elif a.part in ("sd", "all"):
        result.setdefault("sd", {}).update(part_sd(panels, configs, a.sd_draws, a.sd_chains))
        result["sd_settings"] = {"draws": a.sd_draws, "chains": a.sd_chains, "priors": "weak"}
    if a.part in ("placebo", "all"):
        store = (result.setdefault("placebo", {}) if a.model == "did"
                 else result.setdefault("placebo_by_model", {}).setdefault(a.model, {}))
        result["placebo_settings"] = {"draws": a.draws, "tune": a.draws, "chains": a.chains, "priors": "weak"}
        for panel in panels:  # written after each panel: a long run keeps what it finished
            for name, res in part_placebo([panel], configs, a.n, a.draws, a.chains, a.model).items():
                prev = store.get(name, {})
                prev_cfg = prev.get("configs", {}) if prev.get("n") == res["n"] else {}
                store[name] = {**res, "date": result["date"], "configs": {**prev_cfg, **res["configs"]}}
            _write(out_path, result)
    _write(out_path, result)
    print(json.dumps({k: v for k, v in result.items() if k != "placebo"}, indent=1, default=str)[:6000])
    for model, by_panel in {"did": result.get("placebo", {}), **result.get("placebo_by_model", {})}.items():
        for name, res in by_panel.items():
            print(model, name, {k: v for k, v in res.items() if k != "configs"},
                  {c: (r["false_positive_rate"], r["false_positive_ci95"]) for c, r in res["configs"].items()})


if __name__ == "__main__":
    main()
