"""The real frame of the study: the 287 prefecture-level cities of China, 2011–2022.

Built from the 2010 census file ``data/china_cities_census.csv`` (Lei Dong et al., "China
Census" data set, github.com/leiii/census, MIT License, Copyright (c) 2022 Lei Dong):

1. keep prefecture-level cities: the name ends in 市 and the code's 3rd–4th digits are not
   ``90`` (``xx90xx`` are county-level cities administered directly by a province) → 297 rows,
   the four municipalities included;
2. drop the ten cities that became prefecture-level only after 2011 (:data:`LATER_CITIES`)
   → exactly 287, the cities that were prefecture-level throughout 2011–2022.

Region is the usual east / central / west split by province (:data:`REGIONS`).

Size is a three-level grouping of China's 2014 city-size standard (国发〔2014〕51号) by 2010
census urban resident population P:

=========  ==================  ==============================================  ===========
level      P (million)         2014 standard classes merged                    cities (n)
=========  ==================  ==============================================  ===========
small      P < 1               small (< 0.5) and medium (0.5–1)                 74
medium     1 ≤ P < 3           large type II (1–3)                              163
large      P ≥ 3               large type I (3–5), very large, megacity         50
=========  ==================  ==============================================  ===========

The cut points 1 and 3 million are the standard's own class bounds; merging keeps every level
with enough cities for a split sample (the standard's "small" class alone has 16).

**Caveat:** the census gives the urban population of the whole prefecture (all its districts
and counties), not of the city proper, so these classes run larger than the official ones;
say so wherever a size class built from them is shown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .panel import DATA_DIR

log = logging.getLogger(__name__)

CENSUS_CSV = DATA_DIR / "china_cities_census.csv"

#: Became prefecture-level cities after 2011 (year in brackets), so outside the 2011–2022 panel.
LATER_CITIES = {
    "三沙市": 2012, "海东市": 2013, "日喀则市": 2014, "昌都市": 2014, "林芝市": 2015,
    "吐鲁番市": 2015, "儋州市": 2015, "哈密市": 2016, "山南市": 2016, "那曲市": 2017,
}

#: The four municipalities directly under the central government (in the sample).
MUNICIPALITIES = ("北京市", "天津市", "上海市", "重庆市")

#: Province short names by region; a census province name starts with its short name
#: (内蒙古自治区 starts with 内蒙古).
REGIONS = {
    "east": ("北京", "天津", "河北", "辽宁", "上海", "江苏", "浙江", "福建", "山东", "广东", "海南"),
    "central": ("山西", "吉林", "黑龙江", "安徽", "江西", "河南", "湖北", "湖南"),
    "west": ("内蒙古", "广西", "重庆", "四川", "贵州", "云南", "西藏", "陕西", "甘肃", "青海",
             "宁夏", "新疆"),
}

#: Upper bounds (persons, exclusive) of the size levels on 2010 census urban population.
SIZE_BOUNDS = {"small": 1_000_000, "medium": 3_000_000, "large": np.inf}
SIZE_LEVELS = tuple(SIZE_BOUNDS)
REGION_LEVELS = tuple(REGIONS)

N_CITIES = 287

_COLUMNS = ["city", "city_code", "province", "region", "size", "lon", "lat", "popu_2010",
            "popu_urban_2010"]


def region_of(province: str) -> str:
    """East / central / west of a census province name; DataError when it is in no list."""
    for region, shorts in REGIONS.items():
        if any(province.startswith(s) for s in shorts):
            return region
    raise DataError(f"province {province!r} is in none of the east/central/west lists")


def size_of(popu_urban: float) -> str:
    """Size level of a 2010 census urban population (whole prefecture, persons)."""
    if not np.isfinite(popu_urban) or popu_urban <= 0:
        raise DataError(f"urban population {popu_urban!r} is not a positive number")
    for level, upper in SIZE_BOUNDS.items():
        if popu_urban < upper:
            return level
    raise AssertionError("unreachable: the last bound is infinite")


def city_frame(path: str | Path | None = None) -> pd.DataFrame:
    """The 287 cities: city, city_code, province, region, size, lon, lat, popu_2010, popu_urban_2010.

    Sorted by city code. ``size`` comes from the *prefecture's* 2010 urban population (see the
    module docstring), ``lon``/``lat`` are the mean of the boundary polygon's vertices.
    """
    path = Path(path) if path is not None else CENSUS_CSV
    if not path.exists():
        raise DataError(f"the census city file is missing at {path}")
    raw = pd.read_csv(path, dtype={"city_code": str, "city": str, "province": str})
    missing = [c for c in ("city", "city_code", "province", "popu_2010", "popu_urban_2010",
                           "lon", "lat") if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")

    code = raw["city_code"].str.strip()
    prefecture = raw["city"].str.endswith("市") & (code.str[2:4] != "90")
    later = raw["city"].isin(list(LATER_CITIES))
    absent = sorted(set(LATER_CITIES) - set(raw.loc[prefecture, "city"]))
    if absent:
        # the rule "drop these ten" only yields 287 if all ten are there to drop
        raise DataError(f"{path}: later-established cities not found: {absent}")
    df = raw.loc[prefecture & ~later].copy()
    if len(df) != N_CITIES:
        raise DataError(f"{path}: the selection rule gives {len(df)} cities, expected {N_CITIES}")
    if df["city"].duplicated().any():
        raise DataError(f"{path}: duplicated city names {df.loc[df['city'].duplicated(), 'city'].tolist()}")
    bad = df[["popu_2010", "popu_urban_2010", "lon", "lat"]].isna().any(axis=1)
    if bad.any():
        raise DataError(f"{path}: missing 2010 population or coordinates for {df.loc[bad, 'city'].tolist()}")

    df["city_code"] = code[df.index].astype(int)
    df["region"] = df["province"].map(region_of)
    df["size"] = df["popu_urban_2010"].map(size_of)
    for c in ("popu_2010", "popu_urban_2010"):
        df[c] = df[c].astype("int64")
    df = df.sort_values("city_code", kind="stable").reset_index(drop=True)
    log.debug("city frame: %d cities, regions %s, sizes %s", len(df),
              df["region"].value_counts().to_dict(), df["size"].value_counts().to_dict())
    return df[_COLUMNS]
