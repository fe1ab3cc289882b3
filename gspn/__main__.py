"""`python -m gspn`: the `gspn` command."""

from gspn.cli import main

if __name__ == "__main__":
    main()
