"""`python -m newsletter` runs the same command line as the `newsletter` script."""

from newsletter.cli import main

main()
