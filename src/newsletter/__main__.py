"""`python -m newsletter` runs the same command line as the `newsletter` script.

A Ctrl-C that lands while the command line is still being imported (a slow machine, a
cold disk) is the same interruption as one a moment later: exit 130, no traceback.
"""

import sys

try:
    from newsletter.cli import main
except KeyboardInterrupt:
    sys.stderr.write("\nInterrupted before anything was done.\n")
    sys.exit(130)

main()
