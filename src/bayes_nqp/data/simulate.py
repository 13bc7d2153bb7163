"""The seeded demo panel: SIMULATED data on the real 287-city frame, with a known truth.

It is not the study's data. The cities, provinces, regions and census size classes are real
(:func:`bayes_nqp.data.frame.city_frame`); every number in the panel is drawn here, so that each
estimator can be checked against the effect that was put in (``demo_truth.json``).

Data-generating process (i = city, t = 2011..2022, τ = t − 2011, D_it = 1(t ≥ cohort_i)):

Latent development z_i ~ standardised (0.6·std ln urban pop + region shift + N(0, 0.8²)).
Controls X = (gdp_pc, fin, fdi, gov, infra): a city level, a common trend and AR(1) noise
u_it = ρ u_i,t−1 + ε_it, ε ~ N(0, σ²), u_i,2011 ~ N(0, σ²/(1 − ρ²)); e.g.

    gdp_pc_it = 10.45 + 0.45 z_i + 0.06 τ + u_it                      (log GDP per capita)

Pilot cohorts (selection on baseline gdp_pc, so naive comparisons are biased): with
s_i = standardised gdp_pc_i,2011 and G ~ Gumbel, the never-treated are the top N₀ of
−κ s_i + G_i (poorer cities stay out), at least 3 per region and per size level; the treated
are ranked by κ s_i + G'_i into the 2012, 2013 and 2014 batches (richer cities earlier).
Selection is on a time-invariant trait only, so Y(0) trends are parallel given city and year
effects.

Upgrading (tertiary / secondary output ratio, the threshold variable, *not* affected by D):

    q_it = exp(ln q_i + 0.04 τ + u^q_it),   ln q_i ~ N(ln 0.8, 0.3²)

(independent of z, region and size, so the jump at γ* is not confounded with the other
sources of effect heterogeneity; its median over all city-years is about 1.05 and γ* = 1).

Mediators k ∈ {human_capital (ln college students per 10k), sci_tech (S&T share of fiscal
expenditure, %)}:

    M_k,it = α^k_i + γ^k_t + a_k D_it + X_it β_k + e^k_it

Latent new quality productivity:

    Y*_it = α_i + γ_t + δ_it D_it + Σ_k b_k M_k,it + X_it β + e_it
    δ_it  = f_i · base · R_region(i) · S_size(i) · ramp(t − cohort_i) · (1 + jump · 1(q_it > γ*))
    ramp(e) = min(1, 0.6 + 0.4 e / 3),   f_i = 1 + effect_sd · z_i

City effect factors f_i (unit-varying effects, effect_sd = 0.4): z ~ N(0, 1) from a stream of its
own, residualised among the pilot cities on region and size and rescaled to sd 1, so that the
pilot cities disagree (a city's effect deviates from its region × size cell's by about
0.4 × the ATT) while f averages exactly 1 in every region and size level (the designed group
pattern below stays the truth's).
    e_it  = AR(1) within city, ρ = 0.5, marginal sd 1.5;  γ_t = 0.35 (τ − 5.5) + N(0, 0.1²)

(on the nqp scale the idiosyncratic error is this AR(1) plus the indicators' and mediators'
white noise, with lag-1 autocorrelation ≈ 0.45 within a city: ``serial_correlation`` in the truth)

with (defaults of :class:`DemoParams`) base = 1, R = {east 1, central 0.15, west 0.6},
S = {large −0.4, medium 1, small 1.2}, jump = 1, γ* = 1, a = {human_capital 0.08,
sci_tech 0.25}, b = {human_capital 1.5, sci_tech 0.4}: positive in the east and the west
(the west's cities are smaller, so its mean effect is the larger), near zero in the central
region, negative for large cities, and about 30% of the effect runs through the mediators.

Ten indicators, linear in Y* in the direction of their sign (k_j > 0, d_j = ±1), a few with a
control or upgrading term, and a city offset plus idiosyncratic noise:

    ind_j,it = m_j + d_j k_j Y*_it + h_j Z_j,it + c_j,i + ε_j,it

``nqp`` is the entropy index (:mod:`bayes_nqp.data.entropy`) of the ten indicators, weights,
mins and maxs computed on the simulated (observed) panel. With those fixed the index is linear
in the indicators, so the truth is exact on the nqp scale: the effect in cell (i, t) is the
index of the treated world minus the index of the same world with D ≡ 0 (same noise, same
weights), i.e. ∂nqp/∂Y* · (δ_it + Σ_k b_k a_k) D_it. TWFE is *not* expected to recover the ATT
exactly: the effect ramps up with exposure and varies across cells, and with staggered adoption
TWFE's implicit weights differ from the ATT's (already-treated cities serve as controls).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..results import write_atomic, write_json
from .entropy import EntropyWeights, apply_entropy, entropy_weights
from .frame import REGION_LEVELS, SIZE_LEVELS, city_frame
from .panel import DATA_DIR

log = logging.getLogger(__name__)

DEFAULT_SEED = 20250601
YEARS = tuple(range(2011, 2023))
PANEL_FILE, MAP_FILE, TRUTH_FILE = "demo_panel.csv", "demo_map.toml", "demo_truth.json"
#: 12 significant digits: the index lies in [0, 1], and the committed CSV must reproduce a fresh
#: simulation to 1e-9
FLOAT_FORMAT = "%.12g"
#: rows above which the panel's CSV is written by Arrow (:func:`_write_csv`)
CSV_ARROW_ABOVE = 100_000

CONTROLS = ("gdp_pc", "fin", "fdi", "gov", "infra")
MEDIATORS = ("human_capital", "sci_tech")

#: (name, direction, m_j, k_j per unit Y*, noise sd, city-offset sd) — units in data/README.md
INDICATORS = (
    ("ind_rd_staff", +1, 3.2, 0.20, 0.20, 0.15),       # R&D personnel per 100 employed
    ("ind_tertiary_edu", +1, 22.0, 1.2, 1.5, 1.0),     # % of employed with tertiary education
    ("ind_labour_prod", +1, 17.0, 0.6, 0.8, 0.5),      # GDP per employed person, 10k yuan
    ("ind_broadband", +1, 35.0, 1.5, 2.5, 1.5),        # broadband subscribers per 100 residents
    ("ind_robots", +1, 40.0, 2.0, 3.0, 2.0),           # industrial robots per 10k manuf. workers
    ("ind_hitech_inv", +1, 17.0, 0.9, 1.5, 1.0),       # % of fixed-asset investment in high tech
    ("ind_patents", +1, 10.0, 0.6, 0.8, 0.5),          # invention patents per 10k residents
    ("ind_energy_int", -1, 0.95, 0.035, 0.04, 0.03),   # tce per 10k yuan GDP (negative)
    ("ind_emission_int", -1, 22.0, 1.0, 1.5, 1.0),     # t SO2 per 100m yuan GDP (negative)
    ("ind_green", +1, 40.0, 0.5, 1.5, 1.0),            # % green coverage of built-up area
)
INDICATOR_NAMES = tuple(i[0] for i in INDICATORS)
POSITIVE = tuple(i[0] for i in INDICATORS if i[1] > 0)
NEGATIVE = tuple(i[0] for i in INDICATORS if i[1] < 0)

PANEL_COLUMNS = ("city", "city_code", "province", "region", "size", "year", "pilot_year",
                 "treated", "nqp", *INDICATOR_NAMES, *CONTROLS, *MEDIATORS, "upgrading")


@dataclass(frozen=True)
class DemoParams:
    """Structural parameters of the demo DGP (Y* scale unless said otherwise)."""

    batches: dict = field(default_factory=lambda: {2012: 85, 2013: 95, 2014: 80})
    min_never_per_group: int = 3
    selection_kappa: float = 0.8          # tilt of pilot selection on standardised baseline gdp_pc
    base: float = 1.0                     # direct effect of a fully ramped-up pilot, below γ*
    region_mult: dict = field(default_factory=lambda: {"east": 1.0, "central": 0.15, "west": 0.6})
    size_mult: dict = field(default_factory=lambda: {"large": -0.4, "medium": 1.0, "small": 1.2})
    ramp_start: float = 0.6               # ramp(0); ramp reaches 1 at ramp_years
    ramp_years: int = 3
    jump: float = 1.0                     # δ × (1 + jump) above the threshold
    gamma: float = 1.0                    # γ*, threshold in upgrading (tertiary/secondary ratio)
    a: dict = field(default_factory=lambda: {"human_capital": 0.08, "sci_tech": 0.25})
    b: dict = field(default_factory=lambda: {"human_capital": 1.5, "sci_tech": 0.4})
    beta: dict = field(default_factory=lambda: {"gdp_pc": 1.0, "fin": 0.3, "fdi": 5.0,
                                                "gov": -1.0, "infra": 0.03})
    beta_hc: dict = field(default_factory=lambda: {"gdp_pc": 0.2})
    beta_st: dict = field(default_factory=lambda: {"gov": 2.0})
    sd_hc: float = 0.06                   # e^hc (ln students per 10k)
    sd_st: float = 0.25                   # e^st (percentage points)
    sd_y: float = 1.5                     # marginal sd of e (Y*), an AR(1) within city
    rho_y: float = 0.5                    # AR(1) coefficient of e
    trend_y: float = 0.35                 # common upward trend of γ_t per year
    sd_year: float = 0.1                  # year-specific wiggle around the trend
    #: sd of the city effect factors f_i = 1 + effect_sd·z_i on δ (unit-varying effects beyond
    #: region × size; z residualised on region and size among the pilot cities, see _unit_factor):
    #: 0.4 makes a pilot city's effect deviate from its group's by about 0.4 × the ATT
    effect_sd: float = 0.4

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batches"] = {str(k): v for k, v in self.batches.items()}
        return d


@dataclass
class DemoWorlds:
    """Everything the truth is computed from: both worlds, the index map, the parameters."""

    panel: pd.DataFrame            # the observed (treated-world) panel, PANEL_COLUMNS
    untreated: pd.DataFrame        # indicators and mediators of the same world with D ≡ 0
    direct_only: pd.DataFrame      # indicators with the direct channel on, mediators at D ≡ 0
    effect: pd.Series              # nqp(treated world) − nqp(untreated world), cell by cell
    delta: pd.Series               # δ_it on the Y* scale (0 where D = 0)
    ystar: pd.Series               # Y*_it of the treated (observed) world
    ew: EntropyWeights
    params: DemoParams
    seed: int
    dnqp_dystar: float             # ∂nqp/∂Y*, fixed by the weights, mins and maxs
    synthetic: bool = False        # units on a synthetic frame (not the 287 real cities)
    unit_factor: np.ndarray | None = None   # f_i per unit (1 for never-treated units)


def _ar1(rng, n: int, t: int, rho: float, sd: float) -> np.ndarray:
    """n × t stationary AR(1) paths with innovation sd ``sd``."""
    u = np.empty((n, t))
    u[:, 0] = rng.normal(0.0, sd / np.sqrt(1 - rho**2), n)
    for s in range(1, t):
        u[:, s] = rho * u[:, s - 1] + rng.normal(0.0, sd, n)
    return u


def _std(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def _unit_factor(rng, treated: np.ndarray, region: np.ndarray, size: np.ndarray,
                 effect_sd: float) -> np.ndarray:
    """The city effect factors f_i = 1 + effect_sd · z_i (unit-varying effects).

    z ~ N(0, 1) from its own stream (every other draw of the panel is the same for any
    ``effect_sd``); among the pilot cities z is residualised on region and size (additive
    dummies) and rescaled to sd 1, so that the factors average exactly 1 among the pilot cities
    of every region and of every size level: the cities disagree, while the designed group
    pattern (R_region · S_size) stays the groups' mean effect. Never-treated cities have no
    effect; their factor is 1."""
    z = rng.standard_normal(len(treated))
    factor = np.ones(len(treated))
    if treated.sum() < 2:
        return factor
    zt = z[treated]
    cols = [np.ones(len(zt))] + [(g[treated] == lv).astype(float)
                                 for g in (region, size) for lv in np.unique(g[treated])[1:]]
    X = np.column_stack(cols)
    resid = zt - X @ np.linalg.lstsq(X, zt, rcond=None)[0]
    sd = resid.std()
    factor[treated] = 1.0 + effect_sd * (resid / sd if sd > 0 else resid)
    return factor


def _assign_pilots(rng, frame: pd.DataFrame, s: np.ndarray, p: DemoParams) -> np.ndarray:
    """First pilot year per city (NaN = never), tilted towards high baseline gdp_pc ``s``."""
    n = len(frame)
    n_never = n - sum(p.batches.values())
    if n_never < p.min_never_per_group:
        raise DataError(f"pilot batches {p.batches} leave {n_never} never-treated cities")
    key = -p.selection_kappa * s + rng.gumbel(size=n)
    order = np.argsort(-key, kind="stable")
    never: list[int] = []
    is_never = np.zeros(n, bool)  # membership in O(1): the generator serves 100,000-unit panels
    # reserve the comparison group of every split sample first, then fill by the same ranking
    for col, levels in (("size", SIZE_LEVELS), ("region", REGION_LEVELS)):
        vals = frame[col].to_numpy()
        for level in levels:
            have = int((vals[never] == level).sum()) if never else 0
            need = max(0, p.min_never_per_group - have)
            add = [int(i) for i in order[(vals[order] == level) & ~is_never[order]][:need]]
            never += add
            is_never[add] = True
    never += [int(i) for i in order[~is_never[order]][: n_never - len(never)]]
    if len(never) != n_never:
        raise DataError(f"cannot reserve {p.min_never_per_group} never-treated cities per group "
                        f"with only {n_never} never-treated")
    cohort = np.full(n, np.nan)
    treated = np.setdiff1d(np.arange(n), never)
    key2 = p.selection_kappa * s[treated] + rng.gumbel(size=len(treated))
    ranked = treated[np.argsort(-key2, kind="stable")]
    start = 0
    for year, size in sorted(p.batches.items()):
        cohort[ranked[start:start + size]] = year
        start += size
    return cohort


def synthetic_frame(n_units: int, seed: int) -> pd.DataFrame:
    """A SYNTHETIC frame of ``n_units`` units: provinces, regions, size levels and 2010 urban
    populations resampled (with replacement) from the 287 real cities, names ``syn000001``…

    Not real cities: it carries the real frame's mix of groups so that a panel of any size has
    the demo's structure (groups, split samples, selection on a latent development level)."""
    real = city_frame()
    rng = np.random.default_rng([seed, n_units, 287])
    pick = rng.integers(0, len(real), n_units)
    out = real.iloc[pick].reset_index(drop=True).copy()
    width = max(6, len(str(n_units)))
    out["city"] = [f"syn{i:0{width}d}" for i in range(1, n_units + 1)]
    out["city_code"] = np.arange(1, n_units + 1) + 10**width
    return out


def scaled_batches(p: DemoParams, n_units: int, periods: int) -> dict:
    """The demo's pilot batches scaled to ``n_units`` (same shares of 287), dropping batch years
    outside a panel of ``periods`` years from 2011 (the first year stays pre-treatment)."""
    years = [y for y in sorted(p.batches) if y <= YEARS[0] + periods - 1]
    if not years:
        raise DataError(f"a panel of {periods} period(s) has no room for a pilot year "
                        f"(batches {sorted(p.batches)}, first year {YEARS[0]}); use --periods >= 2")
    share = {y: p.batches[y] / 287 for y in years}
    return {y: int(round(share[y] * n_units)) for y in years}


def simulate_worlds(seed: int = DEFAULT_SEED, params: DemoParams | None = None,
                    n_units: int | None = None, periods: int | None = None) -> DemoWorlds:
    """Simulate the demo panel and its no-pilot counterfactual (equations in the module doc).

    ``n_units``/``periods`` (default 287 × 12, the real city frame and 2011–2022): any other
    number of units draws a :func:`synthetic_frame` (labelled as such in the map and the
    truth), and the pilot batches are scaled to it (:func:`scaled_batches`)."""
    p = params or DemoParams()
    T = len(YEARS) if periods is None else int(periods)
    if T < 2:
        raise DataError(f"periods must be at least 2 (got {T})")
    synthetic = n_units is not None and int(n_units) != 287
    if n_units is not None and int(n_units) < 20:
        raise DataError(f"units must be at least 20 (got {n_units}): the split samples need "
                        f"never-treated units in every region and size level")
    if synthetic or T != len(YEARS):
        from dataclasses import replace
        p = replace(p, batches=scaled_batches(p, int(n_units or 287), T))
    rng = np.random.default_rng(seed)
    frame = synthetic_frame(int(n_units), seed) if synthetic else city_frame()
    n = len(frame)
    years_all = tuple(range(YEARS[0], YEARS[0] + T))
    tau = np.arange(T)[None, :].astype(float)                  # years since 2011, 1 × T
    region = frame["region"].to_numpy()
    size = frame["size"].to_numpy()
    reg_shift = pd.Series({"east": 0.8, "central": 0.0, "west": -0.3})

    # ---- city traits, controls (exogenous: nothing below feeds back into them) ------------
    z = _std(0.6 * _std(np.log(frame["popu_urban_2010"].to_numpy(float)))
             + reg_shift[region].to_numpy() + rng.normal(0, 0.8, n))[:, None]
    gdp_pc = 10.45 + 0.45 * z + 0.06 * tau + _ar1(rng, n, T, 0.7, 0.03)
    fin = np.exp(np.log(0.95) + 0.15 * z + rng.normal(0, 0.25, (n, 1))) + 0.03 * tau \
        + _ar1(rng, n, T, 0.6, 0.05)
    fdi = np.exp(np.log(0.018) + 0.3 * z + rng.normal(0, 0.5, (n, 1))) * np.exp(
        -0.03 * tau + _ar1(rng, n, T, 0.5, 0.15))
    gov = np.exp(np.log(0.19) - 0.15 * z + rng.normal(0, 0.25, (n, 1))) + 0.002 * tau \
        + _ar1(rng, n, T, 0.6, 0.01)
    infra = np.exp(np.log(12.0) + 0.1 * z + rng.normal(0, 0.3, (n, 1))) + 0.35 * tau \
        + _ar1(rng, n, T, 0.6, 0.4)
    X = {"gdp_pc": gdp_pc, "fin": fin, "fdi": fdi, "gov": gov, "infra": infra}
    # independent of z, region and size (see the module doc); never touched by D below
    upgrading = np.exp(np.log(0.8) + rng.normal(0, 0.3, (n, 1)) + 0.04 * tau
                       + _ar1(rng, n, T, 0.6, 0.04))

    # ---- pilots ---------------------------------------------------------------------------
    cohort = _assign_pilots(rng, frame, _std(gdp_pc[:, 0]), p)
    years = np.array(years_all, float)[None, :]
    D = (years >= cohort[:, None]).astype(float)               # NaN compares False: never = 0
    exposure = np.where(D > 0, years - cohort[:, None], 0.0)
    ramp = np.minimum(1.0, p.ramp_start + (1 - p.ramp_start) * exposure / p.ramp_years)
    mult = (pd.Series(p.region_mult)[region].to_numpy() * pd.Series(p.size_mult)[size].to_numpy())
    delta = p.base * mult[:, None] * ramp * (1 + p.jump * (upgrading > p.gamma)) * D
    factor = np.ones(n)
    if p.effect_sd > 0:
        factor = _unit_factor(np.random.default_rng([seed, 13]), ~np.isnan(cohort), region, size,
                              p.effect_sd)
        delta = delta * factor[:, None]

    # ---- mediators ------------------------------------------------------------------------
    hc0 = (4.6 + 0.5 * z + rng.normal(0, 0.4, (n, 1)) + 0.02 * tau + rng.normal(0, 0.02, (1, T))
           + sum(b * (X[c] - X[c].mean()) for c, b in p.beta_hc.items()) + rng.normal(0, p.sd_hc, (n, T)))
    st0 = (0.5 + np.exp(np.log(1.8) + 0.3 * z + rng.normal(0, 0.35, (n, 1))) + 0.06 * tau
           + rng.normal(0, 0.05, (1, T))
           + sum(b * (X[c] - X[c].mean()) for c, b in p.beta_st.items()) + rng.normal(0, p.sd_st, (n, T)))
    M0 = {"human_capital": hc0, "sci_tech": st0}
    M1 = {k: M0[k] + p.a[k] * D for k in MEDIATORS}

    # ---- latent NQP ------------------------------------------------------------------------
    alpha = 1.0 * z + rng.normal(0, 0.6, (n, 1))
    gamma_t = p.trend_y * (tau - (T - 1) / 2) + rng.normal(0, p.sd_year, (1, T))
    xb = sum(b * (X[c] - X[c].mean()) for c, b in p.beta.items())
    e = _ar1(rng, n, T, p.rho_y, p.sd_y * np.sqrt(1 - p.rho_y**2))  # marginal sd = sd_y

    def ystar(direct: bool, med: dict) -> np.ndarray:
        return (alpha + gamma_t + (delta if direct else 0.0) + xb + e
                + sum(p.b[k] * (med[k] - M0[k].mean()) for k in MEDIATORS))

    # ---- indicators (same noise in every world) --------------------------------------------
    extra = {"ind_labour_prod": 3.0 * (gdp_pc - gdp_pc.mean()),
             "ind_broadband": 0.5 * (infra - infra.mean()),
             "ind_energy_int": -0.1 * (upgrading - 1.0)}
    noise = {name: rng.normal(0, c_sd, (n, 1)) + rng.normal(0, sd, (n, T))
             for name, _, _, _, sd, c_sd in INDICATORS}

    def indicators(ys: np.ndarray) -> dict:
        return {name: m + d * k * ys + extra.get(name, 0.0) + noise[name]
                for name, d, m, k, _, _ in INDICATORS}

    y1, y0, yd = ystar(True, M1), ystar(False, M0), ystar(True, M0)
    ind1, ind0, indd = indicators(y1), indicators(y0), indicators(yd)

    def long(arrs: dict) -> pd.DataFrame:
        # n × T arrays → city-major long columns (city 0's 12 years first), like ``base``
        return pd.DataFrame({k: np.broadcast_to(v, (n, T)).reshape(-1) for k, v in arrs.items()})

    base = pd.DataFrame({c: np.repeat(frame[c].to_numpy(), T)
                         for c in ("city", "city_code", "province", "region", "size")})
    base["year"] = np.tile(np.array(years_all), n)
    base["pilot_year"] = pd.array(np.repeat(cohort, T), dtype="Float64").astype("Int64")
    base["treated"] = D.reshape(-1).astype(int)
    obs = long(ind1)
    ew = entropy_weights(obs, POSITIVE, NEGATIVE)
    nqp1 = apply_entropy(obs, ew)
    un = long({**ind0, **M0})
    nqp0 = apply_entropy(un, ew)
    panel = pd.concat([base, nqp1.rename("nqp"), obs, long(X), long(M1),
                       long({"upgrading": upgrading})], axis=1)[list(PANEL_COLUMNS)]
    direct_only = long(indd)
    dnqp = float((ew.slopes() * pd.Series({nm: d * k for nm, d, _, k, _, _ in INDICATORS})).sum())
    log.info("simulated %s panel: %d rows, seed %d, %d never-treated cities",
             "synthetic-frame" if synthetic else "demo", len(panel), seed, int(np.isnan(cohort).sum()))
    return DemoWorlds(panel, un, direct_only, (nqp1 - nqp0).rename("effect"),
                      pd.Series(delta.reshape(-1), name="delta"),
                      pd.Series(y1.reshape(-1), name="ystar"), ew, p, seed, dnqp,
                      synthetic=synthetic, unit_factor=factor)


def column_map(synthetic: bool = False, n_units: int = 287) -> dict:
    """The demo panel's column map (the contents of demo_map.toml)."""
    desc = (f"SIMULATED panel on a SYNTHETIC frame of {n_units} units (groups resampled from the "
            f"287 real cities); not real cities, not the study's data" if synthetic else
            "SIMULATED demo panel on the real 287-city frame; not the study's data")
    return {
        "unit": "city", "time": "year", "outcome": "nqp", "cohort": "pilot_year",
        "controls": list(CONTROLS), "mediators": list(MEDIATORS), "threshold": "upgrading",
        "time_effects": True, "simulated": True,
        "description": desc,
        "groups": {"region": "region", "size": "size"},
    }


def _mean(x: pd.Series, mask) -> float:
    return float(x[np.asarray(mask)].mean())


def truth_of(w: DemoWorlds) -> dict:
    """The true effects on the nqp scale, from the counterfactual difference cell by cell."""
    df, p, eff = w.panel, w.params, w.effect
    tr = df["treated"].to_numpy() == 1
    exposure = df["year"] - df["pilot_year"].astype(float)
    direct = apply_entropy(w.direct_only, w.ew) - apply_entropy(w.untreated, w.ew)
    nqp0 = apply_entropy(w.untreated, w.ew)
    mediation = {}
    for k in MEDIATORS:
        # b on the nqp scale: index points per unit of mediator k, all else as in D ≡ 0
        b_nqp = float((apply_entropy(_shift_mediator(w, k), w.ew) - nqp0).mean())
        mediation[k] = {"a": p.a[k], "b": b_nqp, "indirect": p.a[k] * b_nqp}
    mediation["direct"] = _mean(direct, tr)
    mediation["total"] = _mean(eff, tr)
    mediation["indirect_share"] = sum(mediation[k]["indirect"] for k in MEDIATORS) / mediation["total"]
    q = df["upgrading"].to_numpy()
    cohort_years = sorted(int(c) for c in df["pilot_year"].dropna().unique())
    n_never = int(df.loc[df["pilot_year"].isna(), "city"].nunique())
    frame = ({"frame": "synthetic", "frame_note": "SYNTHETIC units: provinces, regions, size levels "
              "and populations resampled from the 287 real cities; unit names are made up"}
             if w.synthetic else {})
    return {
        "simulated": True,
        **frame,
        "seed": w.seed,
        "scale": "nqp index points (entropy index; weights, mins and maxs fixed on the simulated panel)",
        "att": _mean(eff, tr),
        "att_by_cohort": {str(c): _mean(eff, tr & (df["pilot_year"] == c).fillna(False).to_numpy())
                          for c in cohort_years},
        "att_by_event_time": {str(int(e)): _mean(eff, tr & (exposure == e).to_numpy())
                              for e in sorted(exposure[tr].unique())},
        "att_by_region": {r: _mean(eff, tr & (df["region"] == r).to_numpy()) for r in REGION_LEVELS},
        "att_by_size": {s: _mean(eff, tr & (df["size"] == s).to_numpy()) for s in SIZE_LEVELS},
        "unit_effects": _unit_effects(w, tr),
        "serial_correlation": _serial_correlation(w),
        "mediation": mediation,
        "threshold": {"variable": "upgrading", "gamma": p.gamma, "regime": "treated",
                      "slope_below": _mean(eff, tr & (q <= p.gamma)),
                      "slope_above": _mean(eff, tr & (q > p.gamma)),
                      "n_treated_cells_below": int((tr & (q <= p.gamma)).sum()),
                      "n_treated_cells_above": int((tr & (q > p.gamma)).sum())},
        "counts": {"cells": len(df), "treated_cells": int(tr.sum()), "cities": int(df["city"].nunique()),
                   "never_treated_cities": n_never,
                   "cohort_sizes": {str(c): int(df.loc[df["pilot_year"] == c, "city"].nunique())
                                    for c in cohort_years}},
        "definitions": {
            "att": "mean over treated city-years (D=1) of nqp(treated world) − nqp(same world with "
                   "no pilot: same noise, same entropy weights/mins/maxs)",
            "att_by_cohort": "the same mean over the treated city-years of each first-pilot year",
            "att_by_event_time": "the same mean over treated city-years with year − pilot_year = e",
            "att_by_region": "the same mean over treated city-years of each region",
            "att_by_size": "the same mean over treated city-years of each size level",
            "unit_effects.mean_treated": "mean over pilot cities of each city's effect (its mean "
                                         "over its treated years): the estimand of the unit-effect "
                                         "models (did, heterogeneity: tau = the mean of the tau_i "
                                         "of the treated units), the truth their recovery tests use",
            "unit_effects.mean_treated_by_region": "the same mean over the pilot cities of each "
                                                   "region (by_size: of each size level)",
            "unit_effects.sd_treated": "sd of the city effects over pilot cities (region, size, "
                                       "ramp and threshold heterogeneity and the city factors)",
            "unit_effects.mean_treated_common_factor": "mean_treated with every city factor at 1 "
                                                       "(E f = 1: the population value of the "
                                                       "design); differs from mean_treated only "
                                                       "through the realised factors",
            "unit_effects.effect_sd": "sd of the city effect factors f_i = 1 + effect_sd z_i on "
                                      "the direct effect (z residualised on region and size among "
                                      "the pilot cities, rescaled to sd 1)",
            "serial_correlation.rho_latent": "AR(1) coefficient of the latent error e_it within a "
                                             "city (structural.rho_y)",
            "serial_correlation.lag1_autocorrelation": "lag-1 autocorrelation within a city of the "
                                                       "outcome's idiosyncratic error on the nqp "
                                                       "scale (the AR(1) plus white indicator and "
                                                       "mediator noise): rho_latent × ar1_share",
            "serial_correlation.ar1_share": "share of the AR(1) part in that error's variance",
            "serial_correlation.sd_error": "sd of that error on the nqp scale",
            "mediation.a": "effect of the pilot on the mediator, on the mediator's own scale (constant)",
            "mediation.b": "nqp index points per unit of the mediator, holding D and all else fixed",
            "mediation.indirect": "a × b: the part of the effect that runs through the mediator",
            "mediation.direct": "mean over treated city-years of the effect with mediators held at "
                                "their no-pilot values",
            "mediation.total": "direct + Σ indirect = att",
            "threshold.slope_below": "mean effect over treated city-years with upgrading ≤ gamma",
            "threshold.slope_above": "mean effect over treated city-years with upgrading > gamma",
            "structural": "raw DGP parameters on the latent Y* scale (a_k on the mediator's scale); "
                          "nqp = dnqp_dystar × Y* + (terms free of D), so mediation.b = "
                          "structural.b × dnqp_dystar",
        },
        "structural": {**p.to_dict(), "dnqp_dystar": w.dnqp_dystar,
                       "direct_formula": "delta_it = base * region_mult * size_mult * "
                                         "min(1, ramp_start + (1 - ramp_start) * e / ramp_years) * "
                                         "(1 + jump * 1(upgrading_it > gamma))",
                       "entropy": w.ew.to_dict()},
        "notes": [
            "SIMULATED: not the study's data; the cities are real, every value is drawn.",
            "TWFE DID (city + year effects) is not expected to equal att exactly: the effect ramps "
            "up with exposure (dynamic effects) and varies across cities, and with staggered "
            "adoption TWFE weights cells differently from the ATT and uses already-treated cities "
            "as controls (downward bias when effects grow).",
            "Split-sample TWFE by region or size estimates a variance-weighted mix of that group's "
            "cell effects, not att_by_region / att_by_size exactly.",
            "Mediation: a and b are constant; the stepwise (Baron–Kenny) regression recovers them "
            "only because the simulated mediator noise is independent of the outcome noise "
            "(no mediator–outcome confounding here).",
            "Threshold: the effect has other heterogeneity (ramp, region, size) besides the jump at "
            "gamma, so a one-threshold model is misspecified; slope_below/slope_above are means "
            "over treated cells, not regression coefficients.",
            "Selection into the pilot tilts towards high baseline gdp_pc; parallel trends in Y(0) "
            "hold given city and year effects (selection is on a time-invariant trait).",
            "Unit-varying effects: every pilot city's effect is its region x size cell's times a "
            "city factor (sd effect_sd), so unit-clustered or unit-effect inference is needed. The "
            "unit-effect models' tau is the mean of the city effects over pilot cities "
            "(unit_effects.mean_treated, equal weight per city), att the mean over treated "
            "city-years (weight per treated year); TWFE's variance weights differ from both.",
            "Serially correlated errors: the outcome's error is AR(1) within a city (see "
            "serial_correlation), so iid-error intervals are too narrow.",
        ],
    }


def _unit_effects(w: DemoWorlds, tr: np.ndarray) -> dict:
    """The city effects among pilot cities: the unit-effect models' estimand and its spread."""
    df, p = w.panel, w.params
    eff = w.effect.to_numpy()
    n_t = df["year"].nunique()
    f = np.repeat(w.unit_factor if w.unit_factor is not None else np.ones(len(df) // n_t), n_t)
    # the same cells with every city factor at 1: δ/f (f = 0 would leave δ = 0 anyway)
    delta = w.delta.to_numpy()
    common = eff + w.dnqp_dystar * np.where(f != 0, delta / np.where(f != 0, f, 1.0) - delta, 0.0)
    cells = pd.DataFrame({"unit": df["city"].to_numpy(), "region": df["region"].to_numpy(),
                          "size": df["size"].to_numpy(), "eff": eff, "common": common})[tr]
    units = cells.groupby("unit", sort=False).agg(eff=("eff", "mean"), common=("common", "mean"),
                                                   region=("region", "first"), size=("size", "first"))
    return {
        "effect_sd": p.effect_sd,
        "n_treated_units": int(len(units)),
        "mean_treated": float(units["eff"].mean()),
        "mean_treated_by_region": {r: float(units.loc[units["region"] == r, "eff"].mean())
                                   for r in REGION_LEVELS if (units["region"] == r).any()},
        "mean_treated_by_size": {s: float(units.loc[units["size"] == s, "eff"].mean())
                                 for s in SIZE_LEVELS if (units["size"] == s).any()},
        "sd_treated": float(units["eff"].std()),
        "mean_treated_common_factor": float(units["common"].mean()),
    }


def _serial_correlation(w: DemoWorlds) -> dict:
    """The outcome's idiosyncratic error on the nqp scale: the latent AR(1) e plus white noise.

    With the index linear in the indicators (slopes s_j), its variance is
    (∂nqp/∂Y*)²·(sd_y² + Σ_k b_k² sd_k²) + Σ_j s_j² sd_j², of which (∂nqp/∂Y*)²·sd_y² is AR(1)."""
    p = w.params
    slopes = w.ew.slopes()
    var_ar = w.dnqp_dystar ** 2 * p.sd_y ** 2
    var_white = (sum(float(slopes[name]) ** 2 * sd ** 2 for name, _, _, _, sd, _ in INDICATORS)
                 + w.dnqp_dystar ** 2 * (p.b["human_capital"] ** 2 * p.sd_hc ** 2
                                         + p.b["sci_tech"] ** 2 * p.sd_st ** 2))
    share = var_ar / (var_ar + var_white)
    return {"rho_latent": p.rho_y, "lag1_autocorrelation": p.rho_y * share, "ar1_share": share,
            "sd_error": float(np.sqrt(var_ar + var_white))}


def _shift_mediator(w: DemoWorlds, k: str) -> pd.DataFrame:
    """Indicators of the no-pilot world with mediator k raised by one unit."""
    bump = w.params.b[k]  # Y* moves by b_k per unit of M_k
    out = w.untreated.copy()
    for name, d, _, kk, _, _ in INDICATORS:
        out[name] = out[name] + d * kk * bump
    return out


def simulate_demo(seed: int = DEFAULT_SEED, n_units: int | None = None, periods: int | None = None,
                  params: DemoParams | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """The demo panel (287 cities × 2011–2022), its column map and its truth, for ``seed``.

    SIMULATED on the real city frame; not the study's data. Deterministic for a seed. Other
    ``n_units``/``periods`` give a panel of that size with the same structure (a synthetic frame
    beyond the 287 cities); ``params`` changes the DGP (e.g. ``effect_sd``, ``rho_y``).
    """
    w = simulate_worlds(seed, params, n_units=n_units, periods=periods)
    return w.panel, column_map(w.synthetic, len(w.panel) // max(1, w.panel["year"].nunique())), truth_of(w)


def _toml(d: dict) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(f"no TOML form for {v!r}")

    head = ["# SIMULATED demo panel on the real 287-city frame; NOT the study's data."
            if "SYNTHETIC" not in d.get("description", "") else f"# {d['description']}.",
            "# Written by `bayes-nqp simulate` (bayes_nqp.data.simulate.write_demo)."]
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    return "\n".join(head + lines) + "\n"


def _write_csv(path: Path, panel: pd.DataFrame) -> Path:
    """The panel as CSV (``%.12g`` floats up to 100,000 rows, as the committed demo); a larger
    panel by Arrow's CSV writer (shortest round-trip floats, strings quoted) straight to a temp
    file then renamed: pandas formats every float in Python (39 s of a 45 s million-row
    ``simulate``), Arrow in C++, and the panel never becomes one string in memory."""
    if len(panel) <= CSV_ARROW_ABOVE:
        return write_atomic(path, panel.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))
    import os
    import tempfile

    import pyarrow as pa
    from pyarrow import csv as pacsv

    from ..paths import check_under

    path = check_under(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    pacsv.write_csv(pa.Table.from_pandas(panel, preserve_index=False), tmp,
                    write_options=pacsv.WriteOptions(quoting_style="needed"))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def write_demo(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED, n_units: int | None = None,
               periods: int | None = None, params: DemoParams | None = None) -> list[Path]:
    """Simulate and write demo_panel.csv, demo_map.toml and demo_truth.json to ``out_dir``.

    Default ``out_dir``: the repository's data/ folder. Returns the three paths.
    """
    out = Path(out_dir) if out_dir is not None else DATA_DIR
    panel, cmap, truth = simulate_demo(seed, n_units, periods, params)
    return [
        _write_csv(out / PANEL_FILE, panel),
        write_atomic(out / MAP_FILE, _toml(cmap)),
        write_json(out / TRUTH_FILE, truth),
    ]
