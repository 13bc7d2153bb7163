"""The CLI: exit codes and messages instead of tracebacks."""

import pandas as pd
from typer.testing import CliRunner

from bayes_nqp.cli import app

runner = CliRunner()


def write_panel(tmp_path, bad=False):
    rows = [{"sid": s, "year": y, "l_homicide": s + 0.1 * y, "cdl": int(s < 3 and y >= 2002)}
            for s in range(6) for y in range(2000, 2005)]
    df = pd.DataFrame(rows)
    if bad:
        df = df.astype({"l_homicide": object})
        df.loc[2, "l_homicide"] = "oops"
    data = tmp_path / "p.csv"
    df.to_csv(data, index=False)
    cmap = tmp_path / "m.toml"
    cmap.write_text('unit = "sid"\ntime = "year"\noutcome = "l_homicide"\ntreated = "cdl"\n')
    return data, cmap


def test_check_data_on_a_clean_panel_exits_zero(tmp_path):
    data, cmap = write_panel(tmp_path)
    res = runner.invoke(app, ["check-data", str(data), "--map", str(cmap)])
    assert res.exit_code == 0, res.output
    assert "no errors" in res.output


def test_check_data_with_errors_exits_two_and_lists_them(tmp_path):
    data, cmap = write_panel(tmp_path, bad=True)
    res = runner.invoke(app, ["check-data", str(data), "--map", str(cmap)])
    assert res.exit_code == 2
    assert "oops" in res.output and "Traceback" not in res.output


def test_missing_map_file_is_a_message_not_a_traceback(tmp_path):
    data, _ = write_panel(tmp_path)
    res = runner.invoke(app, ["check-data", str(data), "--map", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2
    assert "column map not found" in res.output
