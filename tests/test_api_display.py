"""The Python API meets a notebook: load_panel(DataFrame, dict), a Fit's repr/HTML/table/plot,
the CLI's bracketed labels, and a root logger left alone."""

import io
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import bayes_nqp as bn
from bayes_nqp import cli
from bayes_nqp import estimands as E
from bayes_nqp.bayes.fit import Fit
from bayes_nqp.data import REPO_ROOT


def small_frame():
    rows = [{"state id": s, "year": y, "l_homicide": 0.1 * s + 0.01 * y + 0.3 * (s < 3 and y >= 2003),
             "cdl": int(s < 3 and y >= 2003)} for s in range(8) for y in range(2000, 2006)]
    return pd.DataFrame(rows)


MAP = {"unit": "state id", "time": "year", "outcome": "l_homicide", "treated": "cdl"}


def test_load_panel_takes_a_dataframe_and_a_dict():
    panel = bn.load_panel(small_frame(), MAP)
    assert panel.df.shape[0] == 48 and panel.df["D"].sum() == 9
    again = bn.load_panel(small_frame(), MAP)
    assert again.sha256 == panel.sha256             # a digest of the frame: same data, same id


def test_load_panel_with_a_dataframe_needs_a_map():
    with pytest.raises(bn.ColumnMapError, match="column map"):
        bn.load_panel(small_frame())


def fake_fit(passed=True):
    params = {"beta[e=-2]": {"mean": 0.01, "sd": 0.02, "hdi95": [-0.03, 0.05], "p_positive": 0.6},
              "att[g=2013]": {"mean": 0.2, "sd": 0.05, "hdi95": [0.1, 0.3], "p_positive": 1.0},
              "tau[region=West]": {"mean": 0.3, "sd": 0.1, "hdi95": [0.1, 0.5], "p_positive": 1.0}}
    diag = {"rhat_max": 1.004 if passed else 1.03, "ess_bulk_min": 1500.0, "divergences": 0,
            "passed": passed, "failures": [] if passed else ["R-hat 1.030 > 1.01 (tau[region=West])"],
            "warnings": []}
    one = np.zeros((1, 1, 1))
    est = E.dataset({"beta": E.indexed(one, "event_time", [-2], "beta[e={}]"),
                     "att_cohort": E.indexed(one, "cohort", ["2013"], "att[g={}]", stem="att"),
                     "tau_region": E.by_level({"West": one[..., 0]}, "region")})
    return Fit(model="toy", idata=None, spec={"options": {}}, priors={"name": "default"},
               sampler={"chains": 4, "draws": 1000}, data={"n_obs": 48, "n_units": 8, "simulated": False},
               draws=E.flatten(est), params=params, diag=diag, comparison_={}, estimand_draws=est)


def test_cli_posterior_table_prints_bracketed_labels_in_full(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=200, color_system=None))
    cli.print_fit(fake_fit(passed=False))
    out = buf.getvalue()
    for label in ("beta[e=-2]", "att[g=2013]", "tau[region=West]"):
        assert label in out
    assert "R-hat 1.030 > 1.01 (tau[region=West])" in out


def test_a_fit_has_a_short_repr_and_a_notebook_view():
    f = fake_fit()
    r = repr(f)
    assert r.startswith("<Fit toy:") and "beta[e=-2]=0.01" in r and "gates passed" in r
    assert len(r) < 300
    html = f._repr_html_()
    assert "<table" in html and "att[g=2013]" in html and "R-hat max" in html and "passed" in html
    assert "FAILED" in fake_fit(passed=False)._repr_html_()


def test_a_fit_gives_its_paper_table_and_its_figure():
    f = fake_fit()
    t = f.table()
    assert "tau[region=West]" in t.markdown() and "(0.100)" in t.markdown()
    assert r"\begin{tabularx}" in t.tex()
    fig = f.plot()
    assert fig is not None and fig.axes
    assert "event time" in fig.axes[0].get_xlabel()  # beta(event_time): the event-time picture


def test_root_logger_untouched_by_import_and_replicate():
    # a fresh interpreter: pyfixest must not have been imported before
    code = textwrap.dedent(f"""
        import logging
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        import bayes_nqp as bn
        assert (list(root.handlers), root.level) == before, "import"
        import pandas as pd
        rows = [{{"s": s, "y": y, "out": 0.1 * s + 0.02 * y + 0.3 * (s < 3 and y >= 2003),
                  "d": int(s < 3 and y >= 2003)}} for s in range(8) for y in range(2000, 2006)]
        panel = bn.load_panel(pd.DataFrame(rows), {{"unit": "s", "time": "y", "outcome": "out", "treated": "d"}})
        bn.replicate("did", panel)
        assert (list(root.handlers), root.level) == before, (root.handlers, root.level)
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO_ROOT / "src"), "MPLBACKEND": "Agg",
                              "PATH": "/usr/bin:/bin"}, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
    assert "INFO" not in res.stderr


def test_a_quick_fit_that_misses_its_gates_is_called_a_preview(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=200, color_system=None))
    cli.print_fit(fake_fit(passed=False), quick=True)
    out = buf.getvalue()
    assert "preview" in out and "FAILED" not in out


def test_every_cli_option_says_what_it_does():
    import click
    import typer.main

    group = typer.main.get_command(cli.app)

    def commands(g, prefix=""):
        for name, c in g.commands.items():
            if isinstance(c, click.Group):
                yield from commands(c, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", c

    for name, c in commands(group):
        for p in c.params:
            if isinstance(p, click.Option) and p.name != "help":
                assert p.help and len(p.help) > 8, f"{name} {p.opts}: no help"


def test_model_names_have_one_spelling_on_the_command_line():
    from typer.testing import CliRunner

    res = CliRunner().invoke(cli.app, ["run", "--models", "event-study"])
    assert res.exit_code == 2 and "event_study" in res.output
    assert {m.value for m in cli.ModelName} == set(bn.registry.names())
