"""`python -m bridge.simulator`: run the Toloka simulator on its own."""

import argparse
import logging
import sys

from bridge.simulator import cli


def main() -> int:
    """Parse the command line, set up plain logging, and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.simulator",
        description="A Toloka operations API simulator for tests and demos.",
    )
    cli.add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
