"""`python -m bench` runs the edgebench CLI."""
from bench.cli import main

main()
