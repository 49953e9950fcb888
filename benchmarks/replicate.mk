# The figures of docs/results/replication.md whose model must be trained first, from a fresh
# clone: one target per row (run from the repository root, with cfctool's environment active;
# the rows that start from a model shipped in benchmarks/checkpoints/ give their commands on
# the page):
#
#   make -f benchmarks/replicate.mk imdb-cfc DATA=/path/to/data     # one row
#   make -f benchmarks/replicate.mk -n imdb-cfc-deep-int8             # what a row runs, without running it
#
# Each trains its model first with the recorded recipe and seed (the page gives each row's
# time on a 2-core machine; IMDB CfC-Deep takes hours), and an interrupted training continues
# from its state. Each row ends by printing its figures; they are kept in $(OUT)/.
# The benchmark scripts write their results under $(OUT)/results, never over the recorded
# ones in benchmarks/results/.
CFCTOOL ?= cfctool
PYTHON ?= python
DATA ?= $(or $(CFCTOOL_DATA),../shared/data)
OUT ?= runs/replicate
THREADS ?= 1
export CFCTOOL_BENCH_RESULTS := $(abspath $(OUT))/results

.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: ltc-vs-cfc imdb-cfc imdb-cfc-deep imdb-cfc-ncp person-activity-cfc imdb-cfc-int8 imdb-cfc-deep-int8 \
	pruning distillation seeds

# --- the models the rows start from: IMDB under the default preset (the reference recipe at 20
# epochs; CfC-Deep's searched recipe), Person Activity under its default, all seed 0
$(OUT)/imdb-%.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train imdb --arch $* --seed 0 --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/person-activity-cfc.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train person_activity --arch cfc --seed 0 --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/%.eval.json: $(OUT)/%.st
	$(CFCTOOL) eval $< --data $(DATA) --threads $(THREADS) --json -q > $@

# --- the CfC paper: seconds per training step of LTC and CfC (Person Activity, hidden 64)
ltc-vs-cfc:
	$(PYTHON) -m benchmarks.baselines --only ltc-vs-cfc --threads $(THREADS) --data $(DATA)
	grep -A12 'ltc-vs-cfc:' $(CFCTOOL_BENCH_RESULTS)/baselines.yaml

# --- test accuracy of the trained models
imdb-cfc imdb-cfc-deep imdb-cfc-ncp person-activity-cfc: %: $(OUT)/%.eval.json
	cat $<

# --- int8 (static and QAT) on the int8 engine against fp32 eager, batch 128, one thread
imdb-cfc-int8: $(OUT)/imdb-cfc.st
	$(PYTHON) -m benchmarks.quantize $< --data $(DATA) --out-dir $(OUT)/quantize --reuse --threads 1 \
		--variants static qat
imdb-cfc-deep-int8: $(OUT)/imdb-cfc-deep.st
	$(PYTHON) -m benchmarks.quantize $< --data $(DATA) --out-dir $(OUT)/quantize --reuse --threads 1 \
		--batches 40 --repeats 3 --whole-accuracy --variants static qat

# --- pruning: IMDB 95% global + 3 epochs (examples/imdb.mk's acceptance cells), Person Activity
# 95% global + 10 epochs
pruning: $(OUT)/imdb-cfc.st $(OUT)/person-activity-cfc.st
	$(MAKE) -f examples/imdb.mk pruning-acceptance CFC=$(OUT)/imdb-cfc.st OUT=$(OUT)/imdb \
		CFCTOOL=$(CFCTOOL) DATA=$(DATA) THREADS=$(THREADS)
	$(PYTHON) -m benchmarks.prune $(OUT)/person-activity-cfc.st --methods unstructured-global --ratios 0.95 \
		--finetune 10 --lr 1e-3 --speed-batches 0 --threads $(THREADS) --data $(DATA)

# --- distillation of the CfC-Deep into students 8x, 15x and 30x smaller, with and without it,
# under the study's recipe and the reference recipe (twelve trainings)
distillation: $(OUT)/imdb-cfc-deep.st
	$(PYTHON) -m benchmarks.distill --teacher imdb=$< --threads $(THREADS) --data $(DATA) \
		--out-dir $(OUT)/distill --only $(foreach r,8x 15x 30x,$(foreach p,seed reference,imdb-$(r)-$(p) imdb-$(r)-$(p)-alone))

# --- several seeds (the page's "several seeds"): IMDB CfC under the default preset, CfC-Deep
# under `--preset deep` and under the reference recipe at 20 epochs, each with SEEDS; every run
# is one thread, so `make -j2` trains two at once (CfC-Deep: 2.5 h each on this machine)
SEEDS ?= 0 1 2
S := $(OUT)/seeds
SEED_RUNS := $(foreach s,$(SEEDS),$(S)/cfc-default-s$(s).st $(S)/deep-deep-s$(s).st $(S)/deep-reference-s$(s).st)
resume = $(if $(wildcard $@.train-state),--resume)
$(S)/cfc-default-s%.st:
	mkdir -p $(S)
	$(CFCTOOL) train imdb --arch cfc --preset default --seed $* --threads 1 --data $(DATA) $(resume) -q -o $@
$(S)/deep-deep-s%.st:
	mkdir -p $(S)
	$(CFCTOOL) train imdb --arch cfc-deep --preset deep --seed $* --threads 1 --data $(DATA) $(resume) -q -o $@
$(S)/deep-reference-s%.st:
	mkdir -p $(S)
	$(CFCTOOL) train imdb --arch cfc-deep --preset reference --epochs 20 --seed $* --threads 1 --data $(DATA) \
		$(resume) -q -o $@
seeds: $(SEED_RUNS)
	$(PYTHON) -m benchmarks.seeds $^
