"""The real 287-city frame: selection rule, regions, size classes."""

import pandas as pd
import pytest

from bayes_nqp.data.frame import (CENSUS_CSV, LATER_CITIES, MUNICIPALITIES, REGIONS, SIZE_LEVELS,
                                  city_frame)
from bayes_nqp.errors import DataError


@pytest.fixture(scope="module")
def frame():
    return city_frame()


def test_exactly_287_unique_cities(frame):
    assert len(frame) == 287
    assert frame["city"].is_unique and frame["city_code"].is_unique
    assert frame["city"].str.endswith("市").all()
    assert not (frame["city_code"].astype(str).str[2:4] == "90").any()


def test_later_cities_absent_and_municipalities_present(frame):
    assert len(LATER_CITIES) == 10
    assert not frame["city"].isin(list(LATER_CITIES)).any()
    assert set(MUNICIPALITIES) <= set(frame["city"])


def test_region_counts_follow_the_province_lists(frame):
    raw = pd.read_csv(CENSUS_CSV, dtype={"city_code": str})
    raw = raw[raw["city"].isin(frame["city"])]
    for region, shorts in REGIONS.items():
        expected = raw["province"].map(lambda p: any(p.startswith(s) for s in shorts)).sum()
        assert (frame["region"] == region).sum() == expected
    assert frame["region"].value_counts().to_dict() == {"east": 100, "central": 100, "west": 87}
    assert frame.loc[frame["city"] == "重庆市", "region"].item() == "west"
    assert frame.loc[frame["city"] == "北京市", "region"].item() == "east"


def test_size_levels_follow_urban_population(frame):
    counts = frame["size"].value_counts()
    assert set(counts.index) == set(SIZE_LEVELS)
    assert (counts >= 2).all()
    pop = frame["popu_urban_2010"]
    assert (pop[frame["size"] == "small"] < 1_000_000).all()
    assert pop[frame["size"] == "medium"].between(1_000_000, 2_999_999).all()
    assert (pop[frame["size"] == "large"] >= 3_000_000).all()


def test_columns_and_no_missing(frame):
    assert list(frame.columns) == ["city", "city_code", "province", "region", "size", "lon", "lat",
                                   "popu_2010", "popu_urban_2010"]
    assert not frame.isna().any().any()
    assert frame["lon"].between(73, 136).all() and frame["lat"].between(18, 54).all()


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        city_frame(tmp_path / "nope.csv")
