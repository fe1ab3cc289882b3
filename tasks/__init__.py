"""Training tasks, installed as `gspn.tasks`: one subpackage per task (LightningModule, data modules,
configs/) on the shared BaseTask, run by the `gspn` command. A new task is one new subpackage; it
must import with only the `train` extra installed (import heavier libraries inside the task's code).
"""
