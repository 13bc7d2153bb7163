"""The model registry: one list of models that the CLI, the pipeline, the report and ARCHITECTURE.md
follow, and a new model added with a module and a TOML alone (a toy copy of did, from a temporary
folder, fitted by `bayes-nqp run --models toy` and shown in the report)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bayes_nqp import registry
from bayes_nqp.data import REPO_ROOT
from bayes_nqp.results import read_json

SRC = REPO_ROOT / "src" / "bayes_nqp"


def _architecture_models() -> dict[str, str]:
    """model -> module path, from the Models table of ARCHITECTURE.md."""
    text = (REPO_ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Models", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("model", "") and not set(cells[0]) <= set("- "):
            rows[cells[0]] = cells[1].strip("`")
    return rows


def test_architecture_model_table_lists_exactly_the_registered_models_in_order():
    table = _architecture_models()
    assert list(table) == list(registry.names())
    for name, module in table.items():
        assert module == "bayes/" + registry.MODULES[name].rsplit(".", 1)[1] + ".py"


def test_every_registered_model_declares_a_title_an_intro_and_known_figures():
    from bayes_nqp.report.figures import REPORT_FIGURES

    for name, about in registry.infos().items():
        assert about.spec_path.exists(), name
        assert about.title and about.title != name, f"{name}: no title in [model]"
        assert len(about.intro) > 20, f"{name}: no intro in [model]"
        assert set(about.figures) <= set(REPORT_FIGURES), name


def test_registry_declarations_are_not_passed_to_the_model_as_options():
    from bayes_nqp.bayes import load_spec

    for name in registry.names():
        assert not set(load_spec(name).options) & set(registry.REGISTRY_KEYS), name


def test_no_two_source_files_each_list_every_model_name():
    names = registry.names()
    listing = []
    for p in sorted(SRC.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        if all(re.search(rf"[\"']{n}[\"']", text) for n in names):
            listing.append(p.relative_to(SRC).as_posix())
    assert listing == ["registry.py"]


def test_cli_choices_and_sensitivity_stages_follow_the_registry():
    from bayes_nqp.cli import ModelName

    assert [m.value for m in ModelName] == list(registry.names())  # one spelling: the folders' names
    assert registry.sensitivity_models() == tuple(n for n in registry.names()
                                                  if registry.info(n).sensitivity)
    assert "did" in registry.sensitivity_models() and "event_study" not in registry.sensitivity_models()


def test_further_fits_are_declared_stages_whose_functions_resolve():
    from bayes_nqp.pipeline import model_stages

    for name, about in registry.infos().items():
        for key, target in about.stages:
            assert callable(registry.stage_function(target)), (name, key)
    assert model_stages("threshold") == ["fit:threshold", "compare_thresholds:threshold"]
    assert model_stages("did") == ["fit:did"]


def test_a_stage_that_is_not_module_colon_function_is_a_spec_error(tmp_path):
    from bayes_nqp.errors import SpecError

    spec = tmp_path / "bad.toml"
    spec.write_text('[model]\ntitle = "Bad (bad)"\nstages = { extra = "no_function_named" }\n', encoding="utf-8")
    registry.register_model("bad", "nowhere", spec)
    try:
        with pytest.raises(SpecError, match="stages"):
            registry.info("bad")
    finally:
        registry.unregister_model("bad")
    with pytest.raises(SpecError, match="cannot be imported"):
        registry.stage_function("bayes_nqp.bayes.threshold:no_such_stage")


def test_an_unknown_model_name_is_a_model_error_listing_the_registered_ones():
    from bayes_nqp.errors import ModelError

    with pytest.raises(ModelError, match="choose from did, heterogeneity"):
        registry.canonical("nope")


# ---- a new model: one module and one TOML, nothing else edited --------------------------------

TOY_MODULE = '''
"""A toy model: did under another name (a test of the registry)."""
from bayes_nqp.bayes.base import register
from bayes_nqp.bayes.did import DIDModel


@register("toy")
class ToyModel(DIDModel):
    """The did model, registered as 'toy'."""
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins"
    (pkg / "models").mkdir(parents=True)
    (pkg / "toy_model.py").write_text(textwrap.dedent(TOY_MODULE), encoding="utf-8")
    spec = (REPO_ROOT / "models" / "did.toml").read_text(encoding="utf-8")
    spec = re.sub(r'(?m)^title = .*$', 'title = "Toy copy of DID (toy)"', spec)
    spec = re.sub(r'(?m)^intro = .*$', 'intro = "The did model under another name, added by a test."', spec)
    # a small [quick] for the test (the real specs' quick settings are 4 x 1000 draws)
    spec = re.sub(r'(?ms)^\[quick\]\n.*?(?=^\[)', "[quick]\ndraws = 200\ntune = 200\nchains = 2\n\n", spec)
    assert "draws = 200" in spec
    (pkg / "models" / "toy.toml").write_text(spec, encoding="utf-8")
    monkeypatch.syspath_prepend(str(pkg))
    registry.register_model("toy", "toy_model", pkg / "models" / "toy.toml")  # the one registry line
    yield pkg
    registry.unregister_model("toy")


def test_a_toy_model_from_a_temporary_module_is_fitted_by_run_and_reported(toy, small_panel_files, tmp_path):
    from bayes_nqp.cli import app

    data, cmap = small_panel_files
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--data", str(data), "--map", str(cmap), "--out", str(out),
                                   "--quick", "--seed", "5", "--models", "toy"])
    assert res.exit_code in (0, 3), res.output  # 3: the quick fit may fail its gates
    m = read_json(out / "manifest.json")
    assert m["options"]["models"] == ["toy"]
    assert m["stages"]["fit:toy"]["status"] == "done"
    assert m["stages"]["sensitivity:toy"]["status"] == "done"  # its spec says sensitivity = true
    s = read_json(out / "toy" / "summary.json")
    assert s["model"] == "toy" and "tau" in s["params"]
    assert "tau" in s["comparison"]  # did's comparison mapping came along with the class
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Toy copy of DID (toy)" in html
    assert "The did model under another name, added by a test." in html


@pytest.fixture
def small_panel_files(panel_files, tmp_path):
    """A small panel as a user's CSV and column map."""
    return panel_files(tmp_path, n_units=30, treated_per_cohort=10)
