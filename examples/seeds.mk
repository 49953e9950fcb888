# Included by the example Makefiles: SEEDS="0 1 2" runs a study once per seed, each in
# $(OUT)/seed-S with --seed S on every step, by one sub-make per seed (in parallel under -j),
# and the including Makefile's report then lists every seed's checkpoints: `cfctool report`
# groups those that differ only by seed (n, mean ± sd, 95% interval). One seed (the default,
# 0) keeps $(OUT) as it is.
#
#   make -f examples/quickstart.mk -j2 SEEDS="0 1 2"
#
# The including Makefile sets SEED_GOALS (the targets one seed's study builds, as $(OUT)/...
# paths) before including this file; `$(call per_seed,FILES)` names FILES in every seed's
# directory.
SEEDS ?= 0
SEED := $(firstword $(SEEDS))
SEVERAL_SEEDS := $(filter-out 1,$(words $(SEEDS)))
per_seed = $(if $(SEVERAL_SEEDS),$(foreach s,$(SEEDS),$(patsubst $(OUT)/%,$(OUT)/seed-$(s)/%,$(1))),$(1))

seed_of = $(word 1,$(subst /, ,$(patsubst $(OUT)/seed-%,%,$(1))))
.PHONY: FORCE

ifneq ($(SEVERAL_SEEDS),)
# one seed's goals, each built by a sub-make that sees that seed alone, in its own directory
$(call per_seed,$(SEED_GOALS)): FORCE
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) OUT=$(OUT)/seed-$(call seed_of,$@) SEEDS=$(call seed_of,$@) $@
endif
