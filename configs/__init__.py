"""YAML pieces every task composes with its own config (repeated --config, later wins); `gspn configs` lists them."""
