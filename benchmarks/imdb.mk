# The README's IMDB result tables, on top of examples/imdb.mk's study (the same models):
# each target runs a benchmark script that writes benchmarks/results/*.yaml (machine,
# commit, cfctool version), then `python -m benchmarks.tables` renders the README.
#
#   make -f benchmarks/imdb.mk quantization pruning distillation DATA=../shared/data   # hours
#   make -f benchmarks/imdb.mk pipeline-results pruning-acceptance-results
include examples/imdb.mk
PYTHON ?= python
NOTE ?= nothing else
.PHONY: quantization pruning distillation pipeline-results pruning-acceptance-results

quantization: $(OUT)/cfc.st $(TEACHER)
	$(PYTHON) -m benchmarks.quantize $^ --data $(DATA) --threads $(THREADS) --out-dir $(OUT)/quantize
pruning: $(OUT)/cfc.st
	$(PYTHON) -m benchmarks.prune $< --finetune 1 --lr 5e-4 --data $(DATA) --threads $(THREADS)
distillation: $(TEACHER)
	$(PYTHON) -m benchmarks.distill --teacher imdb=$< --only imdb-ncp64 imdb-ncp64-alone --threads $(THREADS) \
		--data $(DATA) --out-dir $(OUT)/distill
pipeline-results: pipeline
	$(PYTHON) -m benchmarks.study_report pipeline-imdb $(P)/teacher.st $(STEPS:%=$(P)/%.st) --threads $(THREADS) \
		--timing "bench $(BENCH) against the teacher" --note "$(NOTE)"
pruning-acceptance-results: pruning-acceptance
	$(PYTHON) -m benchmarks.study_report prune-acceptance $(A)/cfc.st $(A)/global95.st $(A)/structured50.st \
		--threads $(THREADS) --timing "bench --repeats 5 against the original, the whole test set" --note "$(NOTE)"
