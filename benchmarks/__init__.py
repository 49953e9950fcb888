"""Benchmark and study scripts: run from the repository root as `python -m benchmarks.NAME`.

They use cfctool's public modules only (no `_private` names) and write YAML results under
benchmarks/results/ stamped with the machine, the commit and the cfctool version. Every
script has a smoke test in tests/test_benchmarks.py, so a script that breaks fails CI.
"""
