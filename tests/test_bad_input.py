"""Bad input, one test (or one parametrised family) per class of issue 12 §1 and §4.

Security: a column name is never evaluated (hostile names give the same numbers as plain ones),
no file lands outside --out whatever the map's names, report.md shows user text literally.
Bad input: each class is refused by ``check-data`` (exit 2, the column and the row or value named)
and by the Python API with the package's own exceptions, never a bare KeyError/TypeError/
OverflowError; sampler and prior values are refused before anything compiles.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import bayes_nqp as bn
from bayes_nqp.cli import app
from bayes_nqp.data import ColumnMap, load_panel, panel_from_frame
from bayes_nqp.errors import (BayesNQPError, ColumnMapError, DataError, SpecError,
                              UnsafePathError)

runner = CliRunner(env={"COLUMNS": "400"})  # wide: messages are not wrapped in the table

#: column names a formula library would evaluate or choke on
CODE = "exec(\"open('PWNED','w').close()\")"
HOSTILE = {
    "x1": CODE,
    "x2": "it's a \"quoted\" `backtick` + I(x**2) | unit",
    "hc": "人均 GDP/capita (万元)",
    "q": "C(x) ~ y",
}
HOSTILE_GROUP = "../../../../x"
HOSTILE_LEVELS = {"east": "../east", "central": "`c` *b* | [l](u) #1", "west": "<b>west</b>"}

# small replication options: the comparison is exact (deterministic given the seeds)
OPTIONS = {"mediation": {"reps": 20}, "placebo": {"draws": 20}, "threshold": {"n_boot": 10}}


def raw_frame(make_panel, n_units=60, seed=3) -> pd.DataFrame:
    """The synthetic panel of tests/conftest.py as a user's raw table (plain names)."""
    k = n_units // 4  # three cohorts of k units, the rest never treated
    p = make_panel(n_units=n_units, cohorts={2013: k, 2014: k, 2015: k}, a=0.4, b=0.5,
                   seed=seed, simulated=False)
    df = p.df
    return pd.DataFrame({"city": df["unit"], "year": df["time"], "nqp": df["y"],
                         "pilot_year": df["cohort"].fillna(0), "x1": df["x1"], "x2": df["x2"],
                         "hc": df["hc"], "q": df["x2"].rank() / len(df), "region": df["region"]})


def plain_map() -> dict:
    return {"unit": "city", "time": "year", "outcome": "nqp", "cohort": "pilot_year",
            "controls": ["x1", "x2"], "mediators": ["hc"], "threshold": "q",
            "groups": {"region": "region"}}


def hostile(df: pd.DataFrame, cmap: dict) -> tuple[pd.DataFrame, dict]:
    df = df.rename(columns=HOSTILE)
    df["region"] = df["region"].map(HOSTILE_LEVELS)
    cmap = {**cmap, "controls": [HOSTILE["x1"], HOSTILE["x2"]], "mediators": [HOSTILE["hc"]],
            "threshold": HOSTILE["q"], "groups": {HOSTILE_GROUP: "region"}}
    return df, cmap


def write(tmp_path, df: pd.DataFrame, cmap: dict, name="p"):
    import json
    data = tmp_path / f"{name}.csv"
    df.to_csv(data, index=False)
    lines = []
    for k, v in cmap.items():
        if isinstance(v, dict):
            continue
        lines.append(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    for k, v in cmap.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{json.dumps(g, ensure_ascii=False)} = {json.dumps(c, ensure_ascii=False)}"
                                   for g, c in v.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data, path


def flat(output: str) -> str:
    """CLI output with the table's box characters and line breaks folded into single spaces."""
    return " ".join(output.replace("│", " ").split())


def check_data(data, cmap):
    return runner.invoke(app, ["check-data", str(data), "--map", str(cmap)])


def numbers(obj, rename, path=()):
    """Numeric leaves of a summary keyed by their path, user names mapped back to plain ones."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            for old in sorted(rename, key=len, reverse=True):  # labels such as "q ≤ 0.6"
                k = k.replace(old, rename[old])
            out.update(numbers(v, rename, (*path, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(numbers(v, rename, (*path, i)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[path] = obj
    return out


# ---- §1 security ------------------------------------------------------------------------------

def test_a_column_name_holding_code_is_never_run(tmp_path, make_panel, monkeypatch):
    """The audit's reproduction: the header holds exec(...) and is listed as a control."""
    df, cmap = hostile(raw_frame(make_panel), plain_map())
    data, mp = write(tmp_path, df, cmap)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["replicate", "all", "--data", str(data), "--map", str(mp),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "PWNED").exists()


def test_hostile_names_give_the_same_numbers_as_plain_names(tmp_path, make_panel, monkeypatch):
    """Code, quotes, backticks, formula operators, spaces, '/', CJK in controls, mediator,
    threshold, group key and levels: every replication number equals the plain-name run's."""
    monkeypatch.chdir(tmp_path)
    raw = raw_frame(make_panel)
    plain = bn.replicate("all", panel_from_frame(raw, plain_map()), **OPTIONS)
    df, cmap = hostile(raw, plain_map())
    evil = bn.replicate("all", panel_from_frame(df, cmap), **OPTIONS)
    assert not (tmp_path / "PWNED").exists()
    back = {v: k for k, v in HOSTILE.items()} | {v: k for k, v in HOSTILE_LEVELS.items()}
    back[HOSTILE_GROUP] = "region"
    a, b = numbers(plain, {}), numbers(evil, back)
    assert set(a) == set(b) and len(a) > 100
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert evil["skipped"] == {}
    # the user's names are the labels
    assert set(evil["mediation"]) == {HOSTILE["hc"]}
    assert set(evil["heterogeneity"][HOSTILE_GROUP]) == set(HOSTILE_LEVELS.values())
    assert set(evil["threshold"]["controls"]) == {HOSTILE["x1"], HOSTILE["x2"]}


def test_names_from_the_map_never_place_a_file_outside_out(tmp_path, make_panel, monkeypatch):
    """A [groups] key '../../../../x' (and hostile levels): every file of a run is under --out."""
    from bayes_nqp.pipeline import run

    monkeypatch.chdir(tmp_path)
    df, cmap = hostile(raw_frame(make_panel), plain_map())
    out = tmp_path / "a" / "b" / "c" / "d" / "out"
    before = {p for p in tmp_path.rglob("*")}
    res = run(panel_from_frame(df, cmap), out, models=[], prior_sets=(), report=True,
              replication={"mediation": {"reps": 5}, "placebo": {"draws": 5},
                           "threshold": {"n_boot": 0}})
    new = [p for p in tmp_path.rglob("*") if p not in before and p.is_file()]
    outside = [p for p in new if out not in p.parents]
    assert new and outside == []
    assert res.manifest["stages"]["data"]["status"] == "done"
    group_tables = sorted(p.name for p in (out / "data").glob("group_*.csv"))
    assert len(group_tables) == 1 and ".." not in group_tables[0] and "/" not in group_tables[0]
    # report.md shows user text literally: no raw HTML, no live link or emphasis
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "<b>west</b>" not in md and "&lt;b&gt;west&lt;/b&gt;" in md
    assert "[l](u)" not in md and "[l]\\(u)" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>west</b>" not in html and "&lt;b&gt;west&lt;/b&gt;" in html


def test_every_write_is_checked_against_the_output_folder(tmp_path):
    from bayes_nqp.paths import child, output_root, safe_filename
    from bayes_nqp.results import write_atomic, write_json

    with output_root(tmp_path / "out"):
        write_json(tmp_path / "out" / "ok.json", {})
        with pytest.raises(UnsafePathError, match="outside the output folder"):
            write_atomic(tmp_path / "out" / "group_.." / ".." / ".." / "evil.txt", "x")
        with pytest.raises(UnsafePathError):
            with output_root(tmp_path / "elsewhere"):
                pass
    assert not (tmp_path / "evil.txt").exists()
    for text in ("../../../../x", "..", ".", "", "a/b", "a\\b", "x\x00y", "\n", "con", "é 人"):
        name = safe_filename(text)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".")
        assert child(tmp_path, text).parent == tmp_path
    assert safe_filename("a/b") != safe_filename("a_b")
    assert safe_filename("region") == "region"


def test_markdown_escaping_helper():
    from bayes_nqp.report.build import md_escape, md_pre

    assert md_escape("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert md_escape("[a](http://x) *b* `c` | d_e _f_") == "[a]\\(http://x) \\*b\\* \\`c\\` \\| d_e \\_f\\_"
    assert md_escape("tau[region=east]") == "tau[region=east]" and md_escape("![i](x)") == "!\\[i]\\(x)"
    assert md_escape("# heading").startswith("\\#") and md_escape("line\nbreak") == "line break"
    assert "```" not in md_pre("a ``` b")
    # plain comparisons and ampersands read as written (no entities in the Markdown's text)
    assert md_escape("M = 0.58 < 1, P(>0) = 0.9") == "M = 0.58 < 1, P(>0) = 0.9"
    assert md_escape("Card & Krueger") == "Card & Krueger"
    assert md_escape("a &amp; b &#60;") == "a &amp;amp; b &amp;#60;"  # not read as entities
    assert md_escape("<http://x>") == "&lt;http://x&gt;" and md_escape("> quote") == "\\> quote"


def test_names_with_slashes_survive_a_bayesian_save(tmp_path, make_panel):
    """netCDF forbids '/' in names: a group key and levels with '/' are encoded and read back."""
    df, cmap = hostile(raw_frame(make_panel, n_units=30), plain_map())
    cmap = {**cmap, "mediators": [], "threshold": None}
    cmap = {k: v for k, v in cmap.items() if v not in (None, [])}
    panel = panel_from_frame(df, cmap)
    f = bn.fit("heterogeneity", panel, draws=30, tune=30, chains=1, replication=False, loo=False,
               ppc=False, psense=False)
    f.save(tmp_path / "het")
    back = bn.load_fit(tmp_path / "het")
    assert f"tau[{HOSTILE_GROUP}=../east]" in back.draws
    assert list(back.draws) == list(f.draws)
    assert back.to_summary().estimand_index == f.to_summary().estimand_index  # dims and coordinates
    assert np.allclose(back.draws["tau"], f.draws["tau"])


# ---- §4 bad input that used to pass check-data --------------------------------------------------

def test_column_names_with_spaces_and_unicode_are_accepted(tmp_path, make_panel):
    df, cmap = hostile(raw_frame(make_panel), plain_map())
    res = check_data(*write(tmp_path, df, cmap))
    assert res.exit_code == 0, res.output
    assert "no errors" in res.output


def _bad(tmp_path, make_panel, change):
    """Apply ``change(df, cmap)`` to the plain panel; return (check-data result, df, cmap)."""
    df, cmap = raw_frame(make_panel), plain_map()
    df, cmap = change(df, cmap)
    return check_data(*write(tmp_path, df, cmap)), df, cmap


def _set(df, col, row, value):
    df = df.astype({col: object}) if not isinstance(value, (int, float)) else df
    df.loc[row, col] = value
    return df


CASES = {
    # name: (change, check, words the message must hold)
    "outcome_also_a_control": (lambda d, m: (d, {**m, "controls": ["x1", "nqp"]}),
                               "role_conflict", ["'nqp'", "outcome", "control"]),
    "outcome_also_a_mediator": (lambda d, m: (d, {**m, "mediators": ["hc", "nqp"]}),
                                "role_conflict", ["'nqp'", "mediator"]),
    "mediator_equal_to_outcome": (lambda d, m: (d, {**m, "mediators": ["nqp"]}),
                                  "role_conflict", ["'nqp'", "mediator"]),
    "mediator_also_a_control": (lambda d, m: (d, {**m, "mediators": ["x1"]}),
                                "role_conflict", ["'x1'"]),
    "control_listed_twice": (lambda d, m: (d, {**m, "controls": ["x1", "x1"]}),
                             "role_conflict", ["'x1'", "twice"]),
    "huge_values": (lambda d, m: (_set(d, "x1", 7, 1e300), m),
                    "value_too_large", ["'x1'", "row 7", "1e+300"]),
    "huge_outcome": (lambda d, m: (_set(d, "nqp", 3, -1e200), m),
                     "value_too_large", ["'nqp'", "row 3"]),
    "no_treated_units": (lambda d, m: (d.assign(pilot_year=0), m),
                         "no_treated_units", ["'pilot_year'", "no unit is ever treated"]),
    "no_treated_units_indicator": (
        lambda d, m: (d.assign(D=0), {k: v for k, v in m.items() if k != "cohort"} | {"treated": "D"}),
        "no_treated_units", ["'D'", "no unit is ever treated"]),
    "nan_unit_id": (lambda d, m: (_set(d, "city", 5, np.nan), m),
                    "missing_unit", ["'city'", "row 5"]),
    "constant_outcome": (lambda d, m: (d.assign(nqp=1.5), m),
                         "constant_outcome", ["'nqp'", "1.5"]),
    "group_with_one_level": (lambda d, m: (d.assign(region="east"), m),
                             "single_level_group", ["'region'", "1 level"]),
    "missing_group_level": (lambda d, m: (_set(d, "region", 4, np.nan), m),
                            "missing_group", ["'region'", "row 4"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_at_check_data_and_by_the_api(tmp_path, make_panel, case):
    change, check, words = CASES[case]
    res, df, cmap = _bad(tmp_path, make_panel, change)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    out = flat(res.output)
    for w in words:
        assert w in out, (w, res.output)
    with pytest.raises(DataError) as exc:
        panel_from_frame(df, cmap)
    assert check in exc.value.report.checks()


def test_dates_as_time_are_converted_to_years_with_a_note(tmp_path, make_panel):
    df = raw_frame(make_panel)
    plain = panel_from_frame(df, plain_map())
    dated = df.assign(year=pd.to_datetime(df["year"].astype(str) + "-07-01"))
    data = tmp_path / "d.parquet"
    dated.to_parquet(data)
    _, mp = write(tmp_path, df, plain_map())
    res = runner.invoke(app, ["check-data", str(data), "--map", str(mp)])
    assert res.exit_code == 0, res.output
    assert "converted to their calendar year" in flat(res.output)
    p = load_panel(data, mp)
    assert list(p.times) == list(plain.times) and p.df["time"].dtype.kind == "i"
    assert np.allclose(p.df["y"], plain.df["y"])
    # monthly dates: several rows per unit and year after conversion → refused, not summed
    monthly = pd.concat([dated, dated.assign(year=dated["year"] + pd.Timedelta(days=31))])
    rep = bn.data.validate_frame(monthly, ColumnMap.from_dict(plain_map()))
    assert "duplicate_row" in rep.checks()
    assert any("after dates converted" in p.message for p in rep.errors)


@pytest.mark.parametrize("line, words", [
    ('time_effects = "false"', ["time_effects", "true or false", "'false'"]),
    ('simulated = "no"', ["simulated", "true or false", "'no'"]),
    ("simulated = 0", ["simulated", "true or false"]),
    ('description = 3', ["description", "string"]),
])
def test_map_values_of_the_wrong_type_are_refused_not_coerced(tmp_path, make_panel, line, words):
    data, mp = write(tmp_path, raw_frame(make_panel), plain_map())
    text = mp.read_text(encoding="utf-8")
    mp.write_text(line + "\n" + text, encoding="utf-8")
    res = check_data(data, mp)
    assert res.exit_code == 2 and "Traceback" not in res.output
    out = flat(res.output)
    for w in words:
        assert w in out, (w, res.output)
    with pytest.raises(ColumnMapError):
        load_panel(data, mp)


def test_a_non_utf8_map_or_a_folder_as_map_gets_a_message(tmp_path, make_panel):
    data, mp = write(tmp_path, raw_frame(make_panel), plain_map())
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(mp.read_text(encoding="utf-8").replace("nqp", "nqp_é").encode("latin-1"))
    res = check_data(data, latin)
    assert res.exit_code == 2 and "not UTF-8" in flat(res.output) and "Traceback" not in res.output
    res = check_data(data, tmp_path)
    assert res.exit_code == 2 and "is a folder" in flat(res.output) and "Traceback" not in res.output
    res = runner.invoke(app, ["check-data", str(tmp_path), "--map", str(mp)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    for bad in (latin, tmp_path):
        with pytest.raises(ColumnMapError):
            load_panel(data, bad)


@pytest.mark.parametrize("args, words", [
    (["--draws", "0"], ["draws", "at least 1", "got 0"]),
    (["--chains", "0"], ["chains", "got 0"]),
    (["--seed", "-1"], ["seed", "got -1"]),
    (["--tune", "-5"], ["tune", "got -5"]),
])
def test_sampler_values_are_refused_before_compiling(tmp_path, make_panel, args, words):
    import time

    data, mp = write(tmp_path, raw_frame(make_panel, n_units=30), plain_map())
    t0 = time.perf_counter()
    res = runner.invoke(app, ["fit", "did", "--data", str(data), "--map", str(mp),
                              "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert time.perf_counter() - t0 < 20  # no compilation happened
    out = flat(res.output)
    for w in words:
        assert w in out, (w, res.output)
    assert not (tmp_path / "o" / "did").exists()


def test_run_refuses_a_negative_seed_before_any_stage(tmp_path, make_panel):
    data, mp = write(tmp_path, raw_frame(make_panel, n_units=30), plain_map())
    res = runner.invoke(app, ["run", "--data", str(data), "--map", str(mp), "--out",
                              str(tmp_path / "o"), "--seed", "-1"])
    assert res.exit_code == 2 and "seed" in flat(res.output)
    assert not (tmp_path / "o" / "manifest.json").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_prior_scale_of_nan_or_infinity_is_refused(tmp_path, make_panel, value):
    """Today a segmentation fault inside the sampler; now exit 2 naming the prior."""
    data, mp = write(tmp_path, raw_frame(make_panel, n_units=30), plain_map())
    default = (bn.bayes.spec.PRIORS_DIR / "default.toml").read_text(encoding="utf-8")
    pri = tmp_path / "bad_priors.toml"
    pri.write_text(default + f'\ntau = {{ dist = "Normal", mu = 0.0, sigma = {value} }}\n'
                   if "\ntau =" not in default else
                   "\n".join(f'tau = {{ dist = "Normal", mu = 0.0, sigma = {value} }}'
                             if line.startswith("tau =") else line for line in default.splitlines()),
                   encoding="utf-8")
    res = runner.invoke(app, ["fit", "did", "--data", str(data), "--map", str(mp), "--priors",
                              str(pri), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "tau" in flat(res.output) and "finite" in flat(res.output)
    with pytest.raises(SpecError):
        bn.bayes.spec.load_prior_set(pri)


def _api_calls(df, cmap):
    panel = panel_from_frame(df, cmap)
    return {
        "map not a dict": lambda: panel_from_frame(df, ["unit"]),
        "map role not a string": lambda: panel_from_frame(df, {**cmap, "outcome": 3}),
        "map bool as string": lambda: panel_from_frame(df, {**cmap, "time_effects": "false"}),
        "columns of a wrong type": lambda: load_panel(None, 42),
        "data path of a wrong type": lambda: load_panel(42),
        "ColumnMap with a string flag": lambda: ColumnMap(unit="city", time="year", simulated="no"),
        "huge value": lambda: panel_from_frame(_set(df.copy(), "x2", 1, math.inf), cmap),
        "draws 0": lambda: bn.fit("did", panel, draws=0),
        "draws as text": lambda: bn.fit("did", panel, draws="many"),
        "chains negative": lambda: bn.fit("did", panel, chains=-2),
        "seed negative": lambda: bn.fit("did", panel, seed=-1),
        "target_accept 1": lambda: bn.fit("did", panel, target_accept=1.0),
        "priors of a wrong type": lambda: bn.fit("did", panel, priors=3.5),
        "unknown prior set": lambda: bn.fit("did", panel, priors="nope"),
        "unknown model": lambda: bn.fit("nope", panel),
        "unknown section": lambda: bn.replicate("nope", panel),
    }


def test_the_api_raises_the_package_exceptions_only(make_panel):
    df, cmap = raw_frame(make_panel, n_units=30), plain_map()
    calls = _api_calls(df, cmap)
    for name, call in calls.items():
        try:
            call()
        except BayesNQPError:
            continue
        except Exception as exc:  # noqa: BLE001 — the point of the test
            pytest.fail(f"{name}: {type(exc).__name__}: {exc}")
        pytest.fail(f"{name}: no error raised")


def test_check_data_keeps_accepting_the_demo_panel():
    res = runner.invoke(app, ["check-data"])
    assert res.exit_code == 0 and "no errors" in res.output
    assert os.path.exists(bn.data.DEMO_MAP)
