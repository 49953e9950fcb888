# The seed's model-order-reduction study (the MOR paper) and the CfC reduction, as make targets.
#
#   make -f examples/mor.mk reduced -j2 DATA=../shared/data     # one reduction of each model, eval, bench, report
#   make -f benchmarks/mor.mk tables DATA=../shared/data        # the README's reduction tables (hours)
#
# The originals take long on a CPU (the ODE-RNN's 784-step loop: about 13 min per epoch on
# two threads, 8 epochs); point CONV / ODERNN / CFC at checkpoints you already have to skip them.
# SEEDS="0 1 2" runs it once per seed in $(OUT)/seed-S, reported together (examples/seeds.mk).
CFCTOOL ?= cfctool
DATA ?= $(or $(CFCTOOL_DATA),../shared/data)
OUT ?= runs/mor
THREADS ?= 1
CONV ?= $(OUT)/mnist-conv-ode.st
ODERNN ?= $(OUT)/pmnist-ode-rnn.st
CFC ?= $(OUT)/imdb-cfc-reference.st
BENCH ?= --repeats 3
R := $(OUT)/reduced
SEED_GOALS := $(R)/report.md
include $(dir $(lastword $(MAKEFILE_LIST)))seeds.mk
.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: reduced

# --- the originals, trained with their presets (an interrupted training continues from its state)
$(OUT)/mnist-conv-ode.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train mnist --arch conv-ode --seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/pmnist-ode-rnn.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train pmnist --arch ode-rnn --seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/imdb-cfc-reference.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train imdb --arch cfc --preset reference --seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@

# --- one reduction of each (the acceptance settings), evaluated, timed and reported
$(R)/conv-ode.st: $(CONV)
	mkdir -p $(R) && cp $< $@ && cp $(<:.st=.yaml) $(@:.st=.yaml)
$(R)/conv-ode-pod-deim50.st: $(CONV)
	mkdir -p $(R)
	$(CFCTOOL) reduce $< --method pod-deim --dim 50 --points 120 --interpolation lstsq --every 1 --data $(DATA) \
		--seed $(SEED) --threads $(THREADS) -q -o $@
$(R)/ode-rnn.st: $(ODERNN)
	mkdir -p $(R) && cp $< $@ && cp $(<:.st=.yaml) $(@:.st=.yaml)
$(R)/ode-rnn-svd125.st: $(ODERNN)
	mkdir -p $(R)
	$(CFCTOOL) reduce $< --method svd --dim 125 --data $(DATA) --seed $(SEED) --threads $(THREADS) -q -o $@
$(R)/cfc.st: $(CFC)
	mkdir -p $(R) && cp $< $@ && cp $(<:.st=.yaml) $(@:.st=.yaml)
$(R)/cfc-qdeim96.st: $(CFC)
	mkdir -p $(R)
	$(CFCTOOL) reduce $< --method qdeim --dim 96 --interpolation lstsq --finetune 1 --finetune-scope all --lr 5e-4 \
		--data $(DATA) --seed $(SEED) --threads $(THREADS) -q -o $@

$(R)/%.eval.json: $(R)/%.st
	$(CFCTOOL) eval $< --data $(DATA) --threads $(THREADS) --json -q > $@
PAIRS := conv-ode-pod-deim50:conv-ode ode-rnn-svd125:ode-rnn cfc-qdeim96:cfc
MODELS := conv-ode conv-ode-pod-deim50 ode-rnn ode-rnn-svd125 cfc cfc-qdeim96
$(R)/bench.done: $(MODELS:%=$(R)/%.st)
	for pair in $(PAIRS); do \
		m=$${pair%%:*}; base=$${pair##*:}; \
		$(CFCTOOL) bench $(R)/$$m.st --against $(R)/$$base.st $(BENCH) --data $(DATA) --threads $(THREADS) -q \
			-o $(R)/$$m.bench.yaml > /dev/null || exit 1; \
	done
	touch $@
$(R)/report.md: $(R)/bench.done $(MODELS:%=$(R)/%.eval.json)
	$(CFCTOOL) report $(MODELS:%=$(R)/%.st) -o $@
reduced: $(call per_seed,$(R)/report.md)
	$(CFCTOOL) report $(call per_seed,$(MODELS:%=$(R)/%.st))
