"""The canonical panel, the column map and the readers."""

import numpy as np
import pandas as pd
import pytest

from bayes_nqp import ColumnMapError, SectionSkipped, load_panel, panel_from_frame, read_column_map
from bayes_nqp.data import ColumnMap


def state_panel():
    """A US-state-style panel with other column names: sid, year, l_homicide, an absorbing dummy."""
    rows = []
    for s in range(8):
        for y in range(2000, 2006):
            rows.append({"sid": s, "year": y, "l_homicide": 1.0 + 0.1 * s + 0.05 * y % 1,
                         "cdl": int(s < 4 and y >= 2002 + s % 2), "pop": 1.0 + s})
    return pd.DataFrame(rows)


STATE_MAP = {"unit": "sid", "time": "year", "outcome": "l_homicide", "treated": "cdl", "controls": ["pop"]}


def test_canonical_frame_has_reserved_columns_sorted_by_unit_and_time():
    p = panel_from_frame(state_panel().sample(frac=1, random_state=1), STATE_MAP)
    assert list(p.df[["unit", "time"]].itertuples(index=False)) == sorted(
        p.df[["unit", "time"]].itertuples(index=False))
    for col in ("unit", "time", "unit_idx", "time_idx", "y", "D", "cohort", "rel_time", "pop"):
        assert col in p.df
    assert p.n_units == 8 and p.n_periods == 6 and p.balanced


def test_cohort_is_derived_from_an_absorbing_indicator():
    p = panel_from_frame(state_panel(), STATE_MAP)
    coh = p.df.groupby("unit")["cohort"].first()
    assert coh[0] == 2002 and coh[1] == 2003 and np.isnan(coh[5])
    assert p.cohorts == [2002.0, 2003.0]


def test_treatment_indicator_is_derived_from_cohort_with_zero_meaning_never():
    df = state_panel().drop(columns="cdl")
    df["first"] = np.where(df["sid"] < 4, 2003, 0)
    p = panel_from_frame(df, {**{k: v for k, v in STATE_MAP.items() if k != "treated"}, "cohort": "first"})
    treated = p.df[p.df["unit"] == 0].set_index("time")["D"]
    assert treated[2002] == 0 and treated[2003] == 1
    assert p.df.loc[p.df["unit"] == 6, "D"].sum() == 0


def test_regime_defaults_to_the_treatment_indicator():
    p = panel_from_frame(state_panel(), STATE_MAP)
    assert p.regime == "D"


def test_require_names_the_missing_role():
    p = panel_from_frame(state_panel(), STATE_MAP)
    with pytest.raises(SectionSkipped, match="the role 'mediators'"):
        p.require("mediators", what="mediation")


def test_reserved_column_names_clash_is_reported():
    df = state_panel().rename(columns={"pop": "D"})
    with pytest.raises(ColumnMapError, match="reserves"):
        panel_from_frame(df, {**STATE_MAP, "controls": ["D"]})


def test_unknown_role_in_column_map_is_rejected():
    with pytest.raises(ColumnMapError, match="unknown role"):
        ColumnMap.from_dict({"unit": "a", "time": "b", "outcme": "y"})


def test_cohort_and_treated_together_are_rejected():
    with pytest.raises(ColumnMapError, match="not both"):
        ColumnMap.from_dict({"unit": "a", "time": "b", "cohort": "c", "treated": "d"})


def test_column_map_toml_round_trip(tmp_path):
    path = tmp_path / "map.toml"
    path.write_text('unit = "sid"\ntime = "year"\noutcome = "l_homicide"\ntreated = "cdl"\n'
                    'controls = ["pop"]\n[groups]\nsouth = "south"\n')
    cmap = read_column_map(path)
    assert cmap.groups == {"south": "south"} and cmap.controls == ("pop",)


def test_bad_toml_is_a_column_map_error(tmp_path):
    path = tmp_path / "map.toml"
    path.write_text("unit = \n")
    with pytest.raises(ColumnMapError, match="not valid TOML"):
        read_column_map(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".dta", ".xlsx"])
def test_readers_load_every_supported_format(tmp_path, suffix):
    df = state_panel()
    path = tmp_path / f"panel{suffix}"
    {".csv": lambda: df.to_csv(path, index=False), ".parquet": lambda: df.to_parquet(path),
     ".dta": lambda: df.to_stata(path, write_index=False),
     ".xlsx": lambda: df.to_excel(path, index=False)}[suffix]()
    p = load_panel(path, STATE_MAP)
    assert p.n_obs == 48 and p.sha256 and p.source == str(path)


def test_unknown_file_type_is_a_data_error(tmp_path):
    from bayes_nqp import DataError

    path = tmp_path / "panel.json"
    path.write_text("{}")
    with pytest.raises(DataError, match="unknown file type"):
        load_panel(path, STATE_MAP)
