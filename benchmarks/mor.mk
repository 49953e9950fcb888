# The README's model-order-reduction tables (the MOR paper, Tables II and III, and the CfC
# reduction), on top of examples/mor.mk's originals: benchmarks/results/reduce.yaml and
# the plots (hours on a CPU).
#
#   make -f benchmarks/mor.mk tables DATA=../shared/data
include examples/mor.mk
PYTHON ?= python
.PHONY: tables

tables: $(CONV) $(ODERNN) $(CFC)
	$(PYTHON) -m benchmarks.reduce $(CONV) --methods pod-deim qdeim odeim pod svd apoz --dims 50 100 250 500 \
		--cells pod-deim/lstsq@50:120 qdeim/lstsq@64:128 pod-deim/lstsq@100:200 --finetune 3 --data $(DATA)
	$(PYTHON) -m benchmarks.reduce $(ODERNN) --methods svd pod-deim/lstsq apoz --dims 125 250 --data $(DATA)
	$(PYTHON) -m benchmarks.reduce $(CFC) --dims 96 --methods pod-deim qdeim pod-deim/lstsq qdeim/lstsq apoz prune \
		--finetune 1 --lr 5e-4 --speed-batches 40 --data $(DATA)
	$(PYTHON) -m benchmarks.reduce --plot
