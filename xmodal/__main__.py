"""``python -m xmodal`` (and ``torchrun -m xmodal``) runs the command-line interface."""

from xmodal.cli import main

main()
