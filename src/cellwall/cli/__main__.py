"""``python -m cellwall.cli``."""

from cellwall.cli import main

main()
