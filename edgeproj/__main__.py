"""`python -m edgeproj` runs the CLI (also what torchrun launches with -m)."""

from edgeproj.cli.app import main

if __name__ == "__main__":
    main()
