"""Estimands as a labelled Dataset: real dims, one function that names them (the summary.json
params keys), the index the readers select by, estimands.nc with its dims; no label parsing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bayes_nqp import estimands as E
from bayes_nqp.data import REPO_ROOT


def _draws(rng, *shape):
    return rng.normal(size=(2, 3, *shape))


@pytest.fixture
def ds():
    rng = np.random.default_rng(0)
    lv = {"east": _draws(rng), "central": _draws(rng), "west": _draws(rng)}
    return E.dataset({
        "tau": E.scalar(_draws(rng)),
        "tau_region": E.by_level(lv, "region"),
        "contrast_region": E.contrasts(lv, "region"),
        "beta": E.indexed(_draws(rng, 3), "event_time", [-3, -2, 0], "beta[e={}]"),
        "indirect": E.indexed(_draws(rng, 1), "mediator", ["hc"], "indirect[{}]"),
        "gamma": E.indexed(_draws(rng, 0), "threshold", [], "gamma[{}]"),  # none: left out
    })


def test_variables_have_real_dims_besides_chain_and_draw(ds):
    assert ds["beta"].dims == ("chain", "draw", "event_time")
    assert list(ds["tau_region"]["region"].values) == ["east", "central", "west"]
    assert ds["contrast_region"].dims == ("chain", "draw", "region_pair")
    assert "gamma" not in ds  # a variable along an empty dim is left out


def test_flatten_names_every_element_as_the_summary_params_do(ds):
    flat = E.flatten(ds)
    assert list(flat) == ["tau", "tau[region=east]", "tau[region=central]", "tau[region=west]",
                          "contrast[region:central-east]", "contrast[region:west-east]",
                          "contrast[region:west-central]", "beta[e=-3]", "beta[e=-2]", "beta[e=0]",
                          "indirect[hc]"]
    np.testing.assert_array_equal(flat["beta[e=-2]"], ds["beta"].sel(event_time=-2).to_numpy())
    np.testing.assert_array_equal(flat["contrast[region:west-east]"],
                                  flat["tau[region=west]"] - flat["tau[region=east]"])
    assert all(v.shape == (2, 3) for v in flat.values())


def test_the_index_says_where_each_name_lies(ds):
    ix = E.index(ds)
    assert list(ix) == list(E.flatten(ds))
    assert ix["tau"] == {"var": "tau", "stem": "tau"}
    assert ix["beta[e=-2]"] == {"var": "beta", "stem": "beta", "dim": "event_time", "coord": -2}
    c = ix["contrast[region:west-east]"]
    assert (c["stem"], c["group"], c["minuend"], c["subtrahend"]) == ("contrast", "region", "west", "east")
    assert c["reverse"] == "contrast[region:east-west]"
    assert ix["tau[region=central]"]["group"] == "region"


def test_readers_select_by_dim_stem_or_variable(ds):
    s = {"params": {n: {} for n in E.flatten(ds) if n != "beta[e=0]"}, E.INDEX_KEY: E.index(ds)}
    assert [n for n, _ in E.select(s, dim="event_time")] == ["beta[e=-3]", "beta[e=-2]"]
    assert [ix["coord"] for _, ix in E.select(s, var="indirect")] == ["hc"]
    assert len(E.select(s, stem="tau")) == 4
    assert E.stem_of(s, "indirect[hc]") == "indirect" and E.stem_of(s, "breakdown_M") == "breakdown_M"


def test_estimands_nc_keeps_the_dims_and_the_names(ds, tmp_path):
    p = tmp_path / "estimands.nc"
    E.write(ds, p)
    back = E.read(p)
    assert back["beta"].dims == ("chain", "draw", "event_time")
    assert E.index(back) == E.index(ds)
    for k, v in E.flatten(ds).items():
        np.testing.assert_array_equal(E.read_flat(p)[k], v)


def test_an_estimands_nc_of_flat_names_reads_as_scalar_estimands(tmp_path):
    import xarray as xr

    p = tmp_path / "estimands.nc"
    x = np.arange(6.0).reshape(2, 3)
    xr.Dataset({"tau": (("chain", "draw"), x), "beta[e=0]": (("chain", "draw"), x + 1)}).to_netcdf(p)
    flat = E.read_flat(p)
    assert list(flat) == ["tau", "beta[e=0]"]
    np.testing.assert_array_equal(flat["beta[e=0]"], x + 1)


def test_a_model_returning_a_dict_still_gives_its_names():
    x = np.zeros((1, 2))
    assert list(E.flatten(E.from_flat({"tau": x, "att[g=2013]": x}))) == ["tau", "att[g=2013]"]


#: how the former readers took labels apart (report/figures.py, claims.py, build.py,
#: paper_tables.py, compare.py); none may come back
_PARSING = [r"_EVENT\b", r"_OFF_SCALE\b", r"\[e=\(\?P", r"startswith\(\"(contrast|indirect|gamma|tau|att|beta)\[",
            r"\[len\(\"(contrast|indirect|beta\[e=)", r"split\(\"\[\", 1\)", r"k\[len\(prefix\):"]


def test_no_estimand_label_is_parsed_anywhere_in_src():
    hits = []
    for path in (REPO_ROOT / "src" / "bayes_nqp").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        hits += [f"{path.name}: {p}" for p in _PARSING if re.search(p, text)]
    assert hits == []
