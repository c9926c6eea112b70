"""The hotpath load generator: ``python -m bench.loadgen --help``."""
