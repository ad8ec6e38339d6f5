"""`python -m weightprep` is the `weightprep` command."""

from weightprep.cli.app import main

main()
