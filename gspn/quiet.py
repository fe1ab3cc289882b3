"""Messages of the libraries under `gspn` that a user cannot act on, silenced for every run of the command.

Each entry says why it is noise. Messages a user can act on (a config mistake, a slow setting) stay.
"""

import logging
import warnings

UNACTIONABLE_WARNINGS = (
    # DDP compares every stride of a gradient with its bucket, also the strides of size-1 dimensions, which
    # say nothing about the layout in memory. The gradients of 1x1 and depthwise convolutions fed
    # channels-last differ from their weights only there (tests/platform/test_quiet.py checks every model
    # family), so the warning's "may impair performance" does not apply.
    (UserWarning, "Grad strides do not match bucket view strides"),
    # Lightning 2.6 flattens batches with a pytree class that torch itself deprecates.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
# Lightning's advertisement of a cloud logger, printed at the start of every run.
UNACTIONABLE_LOGS = {"lightning.pytorch.utilities.rank_zero": "litlogger"}


def silence_unactionable() -> None:
    for category, message in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for logger, text in UNACTIONABLE_LOGS.items():
        logging.getLogger(logger).addFilter(lambda record, text=text: text not in record.getMessage())
