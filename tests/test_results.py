"""The results contract's writers: atomic files, and the simulated-data notice on every output."""

import json
import os
import stat

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_nqp.results import (SIMULATED_NOTICE, estimate, jsonable, save_table,  # noqa: E402
                               title_figure, write_json)


def test_a_table_from_simulated_data_says_so_in_both_formats(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    csv, md = save_table(df, tmp_path / "t", simulated=True)
    assert md.read_text(encoding="utf-8").startswith(f"> {SIMULATED_NOTICE}")
    assert csv.read_text(encoding="utf-8").startswith(f"# {SIMULATED_NOTICE}")
    pd.testing.assert_frame_equal(pd.read_csv(csv, comment="#"), df)


def test_a_table_from_real_data_carries_no_notice(tmp_path):
    csv, md = save_table(pd.DataFrame({"a": [1]}), tmp_path / "t")
    assert "SIMULATED" not in csv.read_text() + md.read_text()


def test_a_figure_from_simulated_data_says_so_in_title_and_caption():
    fig = plt.figure()
    title_figure(fig, "Event study", simulated=True)
    assert fig._suptitle.get_text() == "SIMULATED DATA — Event study"
    assert any(t.get_text() == SIMULATED_NOTICE for t in fig.texts)
    plt.close(fig)


def test_written_files_are_readable_by_others_and_leave_no_temporary(tmp_path):
    path = write_json(tmp_path / "s.json", {"x": np.float64(1.5), "n": np.int64(2), "nan": float("nan")})
    assert json.loads(path.read_text()) == {"x": 1.5, "n": 2, "nan": None}
    assert os.stat(path).st_mode & stat.S_IROTH
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_estimate_builds_a_normal_interval_from_the_standard_error():
    e = estimate(1.0, 0.5, pvalue=0.04)
    assert e["ci95"] == [1.0 - 1.959963984540054 * 0.5, 1.0 + 1.959963984540054 * 0.5]
    assert e["pvalue"] == 0.04 and jsonable((np.bool_(True),)) == [True]
