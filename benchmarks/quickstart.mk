# The README's quickstart table: examples/quickstart.mk's study, recorded in
# benchmarks/results/quickstart.yaml (machine, commit, cfctool version); then
# `python -m benchmarks.tables` renders the README.
#
#   make -f benchmarks/quickstart.mk results -j2
include examples/quickstart.mk
PYTHON ?= python
NOTE ?= nothing else
.PHONY: results

results: $(OUT)/report.md
	$(PYTHON) -m benchmarks.study_report quickstart $(CKPTS) --threads $(THREADS) \
		--timing "bench $(BENCH) against the teacher" --note "$(NOTE)"
