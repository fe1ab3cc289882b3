"""Training tasks, one subpackage each (LightningModule, data modules, configs/), run by the `gspn` command."""
