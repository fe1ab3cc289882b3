"""gspn: Generalized Spatial Propagation Networks (GSPN, GSPN-2) for vision."""

__version__ = "0.1.0"
