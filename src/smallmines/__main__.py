"""``python -m smallmines``: the same command line as ``smallmines``."""

from smallmines.cli import main

if __name__ == "__main__":
    main()
