"""Helpers shared by the tests and the benchmarks: the rebuild property every coverage
run checks, the hand-written zoo, and the random-DAG strategies."""
