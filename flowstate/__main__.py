"""``python -m flowstate``: the same command line as the ``flowstate`` console script."""

from flowstate.cli import main

if __name__ == "__main__":
    main(prog_name="flowstate")
