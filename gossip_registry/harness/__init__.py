"""Driving real agent processes from outside: bench_cluster.py and the chaos runner."""
