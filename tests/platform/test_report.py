"""What a run shows when nobody watches its progress bar: a plain line per validation, a CSV of its
metrics beside TensorBoard's events, TensorBoard's hp_metric the task's metric."""

import csv
import logging
import warnings

from gspn.cli import cli_main
from tests.cli.conftest import tiny_config
from tests.config_files import write_config


def test_a_run_without_a_terminal_prints_each_validation_and_keeps_a_csv(tmp_path, capsys, caplog):
    config = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "run", max_epochs=2))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        cli_main(["fit", "--config", config])
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # the CSV beside TensorBoard
    logs = tmp_path / "run" / "lightning_logs" / "version_0"
    assert f"run folder: {tmp_path / 'run'}; logs: {logs}" in caplog.messages  # named once
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("validation:")]
    assert [line.split()[1:5] for line in lines] == [["step", "4", "epoch", "0"], ["step", "8", "epoch", "1"]]
    assert all("val_acc1" in line and "val_loss" in line for line in lines)
    with (logs / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    accuracies = [float(row["val_acc1"]) for row in rows if row.get("val_acc1")]
    assert len(accuracies) == 2
    hp_metric = [float(row["hp_metric"]) for row in rows if row.get("hp_metric")]
    assert hp_metric == accuracies  # the task's monitor, val_acc1, not TensorBoard's -1
    assert list(logs.glob("events.out.tfevents.*"))
