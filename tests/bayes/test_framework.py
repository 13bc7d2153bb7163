"""The Bayesian fit framework (spec.py, priors.py, fit.py, diagnostics.py): spec and prior-set
errors, the diagnostic gates, determinism for a seed, and saving and loading a fit."""

from __future__ import annotations

import numpy as np
import pytest

import bayes_nqp as bn
from bayes_nqp.bayes.fit import make_model
from bayes_nqp.bayes.spec import load_prior_set, load_spec
from bayes_nqp.errors import ModelError, SpecError

# ---- specs and prior sets -------------------------------------------------------------------


def test_a_prior_set_missing_a_prior_the_model_needs_is_an_error_naming_it(tmp_path, synthetic):
    path = tmp_path / "thin.toml"
    path.write_text('intercept = { dist = "Normal", mu = 0.0, sigma = 1.0 }\n')
    model = make_model("did", synthetic.panel, priors=path)
    # the first prior did reads after the intercept: the fixed scale of the year effects
    with pytest.raises(SpecError, match="has no prior 'year'"):
        model.build()


def test_an_unknown_prior_set_lists_the_known_ones():
    with pytest.raises(SpecError, match="default, skeptical, weak"):
        load_prior_set("optimistic")


@pytest.mark.parametrize("line, message", [
    ('tau = { dist = "Laplace", mu = 0.0, b = 1.0 }', "unknown dist 'Laplace'"),
    ('tau = { dist = "Normal", mu = 0.0 }', r"needs exactly the parameters \['mu', 'sigma'\]"),
    ('tau = { dist = "HalfNormal", sigma = -1.0 }', "must be positive"),
    ('tau = 1.0', "must be a table with 'dist'"),
])
def test_a_malformed_prior_is_rejected_with_what_to_fix(tmp_path, line, message):
    path = tmp_path / "bad.toml"
    path.write_text(line + "\n")
    with pytest.raises(SpecError, match=message):
        load_prior_set(path)


def test_a_spec_with_an_unknown_sampler_setting_is_rejected(tmp_path):
    path = tmp_path / "did.toml"
    path.write_text("[model]\n[sampler]\ndraw = 100\n")
    with pytest.raises(SpecError, match=r"unknown setting\(s\) \['draw'\]"):
        load_spec("did", path)


def test_the_shipped_specs_load_with_their_options():
    did, het = load_spec("did"), load_spec("heterogeneity")
    assert did.option("unit_effects") == "marginal" and did.option("likelihood") == "normal"
    assert het.option("groups") == []
    assert did.sampler.chains == 4 and did.sampler.draws == 1000


def test_an_unknown_model_is_a_model_error_listing_the_models(synthetic):
    with pytest.raises(ModelError, match="did"):
        make_model("diff_in_diff", synthetic.panel)


def test_prior_hyperparameters_are_data_so_a_prior_set_can_change_without_recompiling(synthetic):
    pm_model = make_model("did", synthetic.panel).build()
    assert "prior__tau_z__sigma" in pm_model.named_vars
    assert float(pm_model["prior__tau_z__sigma"].get_value()) == 1.0


# ---- gates, determinism, save/load --------------------------------------------------------------

def test_a_starved_fit_fails_the_gates_and_names_the_failure(run_did):
    fit = run_did(draws=20, tune=20, chains=1, seed=1)
    assert fit.passed is False
    assert any(f.startswith("bulk ESS") for f in fit.diag["failures"])
    assert fit.diag["n_draws"] == 20


def test_the_same_seed_gives_identical_summaries(run_did):
    a = run_did(draws=150, tune=150, chains=2, seed=9)
    b = run_did(draws=150, tune=150, chains=2, seed=9)
    c = run_did(draws=150, tune=150, chains=2, seed=10)
    assert a.summary().equals(b.summary())
    assert a.diagnostics() == b.diagnostics()
    np.testing.assert_array_equal(a.idata["posterior"]["alpha"], b.idata["posterior"]["alpha"])
    assert not a.summary().equals(c.summary())


def test_a_saved_fit_loads_back_with_the_same_numbers(did_fit, tmp_path):
    out = did_fit.save(tmp_path / "did")
    back = bn.load_fit(out)
    assert back.params == did_fit.params
    assert back.diag == did_fit.diag
    np.testing.assert_array_equal(back.draws["tau"], did_fit.draws["tau"])
    assert "estimands" in back.idata.children  # the labelled estimands: a group of the DataTree
    assert back.summary_json()["estimand_index"] == did_fit.summary_json()["estimand_index"] == {
        "tau": {"var": "tau", "stem": "tau"}}
    np.testing.assert_allclose(back.idata["posterior"]["alpha"], did_fit.idata["posterior"]["alpha"])
    assert back.summary_json()["notice"].startswith("SIMULATED DATA")
