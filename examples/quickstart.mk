# The main job in miniature, on the built-in bit-stream XOR task (no data files): train a
# CfC-Deep, prune it, distill it into a CfC-NCP, quantize that to int8, evaluate and bench
# every step against the original, and print the report table.
#
#   make -f examples/quickstart.mk -j2            # about 2 minutes on 2 cores
#   make -f examples/quickstart.mk OUT=/tmp/qs TRAIN_SIZE=400 EPOCHS=1   # seconds (the tests)
#   make -f examples/quickstart.mk -j2 SEEDS="0 1 2"   # three seeds, reported as mean ± sd (examples/seeds.mk)
#
# Every .st is a make target: change a step's settings and only it and what follows rerun.
CFCTOOL ?= cfctool
OUT ?= quickstart
TRAIN_SIZE ?= 8000
EPOCHS ?= 4
THREADS ?= 1
PRUNE ?= --global --ratio 0.8 --finetune 2 --storage sparse
STUDENT ?= --student cfc-ncp --hidden 16 --alpha 0.25
QUANTIZE ?= --scheme static
BENCH ?= --batches 8 --repeats 5

MODELS := teacher pruned student student-int8
CKPTS := $(MODELS:%=$(OUT)/%.st)
SEED_GOALS := $(OUT)/report.md
include $(dir $(lastword $(MAKEFILE_LIST)))seeds.mk
.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: all clean FORCE
.DEFAULT_GOAL := all

# A step's settings live in a stamp file that is rewritten only when they change, and the
# step depends on it: `make ... PRUNE="..."` redoes the pruning and what follows, nothing else.
settings = @mkdir -p $(OUT); echo '$(1)' | cmp -s - $@ || echo '$(1)' > $@
$(OUT)/train.settings: FORCE ; $(call settings,$(TRAIN_SIZE) $(EPOCHS) $(THREADS) $(SEED))
$(OUT)/prune.settings: FORCE ; $(call settings,$(PRUNE) $(SEED))
$(OUT)/distill.settings: FORCE ; $(call settings,$(STUDENT) $(EPOCHS) $(SEED))
$(OUT)/quantize.settings: FORCE ; $(call settings,$(QUANTIZE) $(SEED))
$(OUT)/bench.settings: FORCE ; $(call settings,$(BENCH))

# the report of every seed's checkpoints (one seed: the files of $(OUT) itself)
all: $(call per_seed,$(OUT)/report.md)
	$(if $(SEVERAL_SEEDS),$(CFCTOOL) report $(call per_seed,$(CKPTS)) -o $(OUT)/report.md)
	$(CFCTOOL) report $(call per_seed,$(CKPTS))

$(OUT)/teacher.st: $(OUT)/train.settings
	$(CFCTOOL) train xor --arch cfc-deep --backbone-dropout 0 --train-size $(TRAIN_SIZE) --epochs $(EPOCHS) \
		--seed $(SEED) --threads $(THREADS) -q -o $@

$(OUT)/pruned.st: $(OUT)/teacher.st $(OUT)/prune.settings
	$(CFCTOOL) prune $< $(PRUNE) --seed $(SEED) --threads $(THREADS) -q -o $@

$(OUT)/student.st: $(OUT)/pruned.st $(OUT)/distill.settings
	$(CFCTOOL) distill $< $(STUDENT) --epochs $(EPOCHS) --seed $(SEED) --threads $(THREADS) -q -o $@

$(OUT)/student-int8.st: $(OUT)/student.st $(OUT)/quantize.settings
	$(CFCTOOL) quantize $< $(QUANTIZE) --seed $(SEED) --threads $(THREADS) -q -o $@

$(OUT)/%.eval.json: $(OUT)/%.st
	$(CFCTOOL) eval $< --threads $(THREADS) --json -q > $@

# One recipe times every model, one after another, once all are built: timings taken beside
# a training would not be worth reading (each is interleaved with the teacher, medians).
$(OUT)/bench.done: $(CKPTS) $(OUT)/bench.settings
	for m in $(MODELS); do \
		$(CFCTOOL) bench $(OUT)/$$m.st --against $(OUT)/teacher.st $(BENCH) --threads $(THREADS) -q \
			-o $(OUT)/$$m.bench.yaml > /dev/null || exit 1; \
	done
	touch $@

$(OUT)/report.md: $(MODELS:%=$(OUT)/%.eval.json) $(OUT)/bench.done
	$(CFCTOOL) report $(CKPTS) -o $@

clean:
	rm -rf $(OUT)
