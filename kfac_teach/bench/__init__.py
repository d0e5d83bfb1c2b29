"""Benchmarks (not tests): ``python -m kfac_teach.bench {fisher,train} ...`` prints/writes JSON."""
