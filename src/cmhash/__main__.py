"""`python -m cmhash` runs the command-line interface."""

from cmhash.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
