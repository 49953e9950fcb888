# A compression study on IMDB with cfctool alone: the baselines, the pruning acceptance
# cells and the combined pipeline (prune -> distill -> quantize), each ending in a report.
#
#   make -f examples/imdb.mk pipeline -j2 DATA=../shared/data      # prune -> distill -> quantize, then the report
#   make -f examples/imdb.mk baselines                              # the three reference models (hours)
#
# The baselines take hours on a CPU (CfC-Deep about 2 h); an interrupted one continues from
# its training state. Point TEACHER / NCP at checkpoints you already have to skip them:
# make -f examples/imdb.mk pipeline TEACHER=deep.st NCP=ncp.st
# (benchmarks/imdb.mk adds the README's result tables on top of these targets.)
# SEEDS="0 1 2" runs each target once per seed in $(OUT)/seed-S and reports them together
# (examples/seeds.mk).
CFCTOOL ?= cfctool
DATA ?= $(or $(CFCTOOL_DATA),../shared/data)
OUT ?= runs/imdb
THREADS ?= 1
TEACHER ?= $(OUT)/cfc-deep.st
NCP ?= $(OUT)/cfc-ncp.st
CFC ?= $(OUT)/cfc.st
EMBED ?= 16
DISTILL_EPOCHS ?= 10
BENCH ?= --batches 40 --repeats 5

P := $(OUT)/pipeline
A := $(OUT)/prune-acceptance
STEPS := ncp-emb$(EMBED) ncp-emb$(EMBED)-distilled ncp-emb$(EMBED)-distilled-int8
SEED_GOALS := $(OUT)/cfc.st $(OUT)/cfc-ncp.st $(OUT)/cfc-deep.st $(A)/report.md $(P)/report.md
include $(dir $(lastword $(MAKEFILE_LIST)))seeds.mk
.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: pipeline baselines pruning-acceptance

# --- baselines: the reference recipes (an interrupted training continues from its state); the CfC-Deep
# with its searched recipe (--preset deep: the search is on the baselines results page)
$(OUT)/cfc-deep.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train imdb --arch cfc-deep --preset deep \
		--seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/cfc-ncp.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train imdb --arch cfc-ncp --preset reference --epochs 20 --seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
$(OUT)/cfc.st:
	mkdir -p $(OUT)
	$(CFCTOOL) train imdb --arch cfc --preset reference --seed $(SEED) --threads $(THREADS) --data $(DATA) \
		$(if $(wildcard $@.train-state),--resume) -q -o $@
baselines: $(call per_seed,$(OUT)/cfc.st $(OUT)/cfc-ncp.st $(OUT)/cfc-deep.st)

# --- the pruning acceptance cells on the plain CfC, as a report
$(A)/cfc.st: $(CFC)
	mkdir -p $(A) && cp $< $@ && cp $(<:.st=.yaml) $(@:.st=.yaml)
$(A)/global95.st: $(CFC)
	mkdir -p $(A)
	$(CFCTOOL) prune $< --global --ratio 0.95 --scope all --finetune 3 --lr 5e-4 --storage sparse --data $(DATA) \
		--seed $(SEED) --threads $(THREADS) -q -o $@
$(A)/structured50.st: $(CFC)
	mkdir -p $(A)
	$(CFCTOOL) prune $< --structured --local --ratio 0.5 --criterion l2 --finetune 3 --lr 2e-4 --data $(DATA) \
		--seed $(SEED) --threads $(THREADS) -q -o $@
$(A)/%.eval.json: $(A)/%.st
	$(CFCTOOL) eval $< --data $(DATA) --threads $(THREADS) --json -q > $@
$(A)/bench.done: $(A)/cfc.st $(A)/global95.st $(A)/structured50.st
	for m in cfc global95 structured50; do \
		$(CFCTOOL) bench $(A)/$$m.st --against $(A)/cfc.st --repeats 5 --data $(DATA) --threads $(THREADS) -q \
			-o $(A)/$$m.bench.yaml > /dev/null || exit 1; \
	done
	touch $@
$(A)/report.md: $(A)/bench.done $(A)/cfc.eval.json $(A)/global95.eval.json $(A)/structured50.eval.json
	$(CFCTOOL) report $(A)/cfc.st $(A)/global95.st $(A)/structured50.st -o $@
pruning-acceptance: $(call per_seed,$(A)/report.md)
	$(CFCTOOL) report $(call per_seed,$(A)/cfc.st $(A)/global95.st $(A)/structured50.st)

# --- the combined pipeline from the CfC-Deep teacher: prune -> distill -> quantize
# 1. prune: the CfC-NCP's embedding to EMBED columns (structured: a physically smaller table)
$(P)/ncp-emb$(EMBED).st: $(NCP)
	mkdir -p $(P)
	$(CFCTOOL) prune $< --structured --scope embedding --local --ratio $(shell awk 'BEGIN { printf "%g", 1 - $(EMBED) / 192 }') --threads $(THREADS) -q -o $@
# 2. distill: the CfC-Deep teacher into that student (started from it)
$(P)/ncp-emb$(EMBED)-distilled.st: $(P)/ncp-emb$(EMBED).st $(TEACHER)
	$(CFCTOOL) distill $(TEACHER) --student cfc-ncp --hidden 64 --embedding-dim $(EMBED) --init $< \
		--epochs $(DISTILL_EPOCHS) --data $(DATA) --seed $(SEED) --threads $(THREADS) $(if $(wildcard $@.train-state),--resume) -q -o $@
# 3. quantize: static int8 (weights, activations, the embedding's rows)
$(P)/ncp-emb$(EMBED)-distilled-int8.st: $(P)/ncp-emb$(EMBED)-distilled.st
	$(CFCTOOL) quantize $< --scheme static --data $(DATA) --seed $(SEED) --threads $(THREADS) -q -o $@

$(P)/teacher.st: $(TEACHER)
	mkdir -p $(P) && cp $< $@ && cp $(<:.st=.yaml) $(@:.st=.yaml)
$(P)/%.eval.json: $(P)/%.st
	$(CFCTOOL) eval $< --data $(DATA) --threads $(THREADS) --json -q > $@
$(P)/bench.done: $(P)/teacher.st $(STEPS:%=$(P)/%.st)
	for m in teacher $(STEPS); do \
		$(CFCTOOL) bench $(P)/$$m.st --against $(P)/teacher.st $(BENCH) --data $(DATA) --threads $(THREADS) -q \
			-o $(P)/$$m.bench.yaml > /dev/null || exit 1; \
	done
	touch $@
$(P)/report.md: $(P)/bench.done $(addprefix $(P)/,$(addsuffix .eval.json,teacher $(STEPS)))
	$(CFCTOOL) report $(P)/teacher.st $(STEPS:%=$(P)/%.st) -o $@
pipeline: $(call per_seed,$(P)/report.md)
	$(CFCTOOL) report $(call per_seed,$(P)/teacher.st $(STEPS:%=$(P)/%.st))
