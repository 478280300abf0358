# One entry point for people and CI. `make run` and `make test` set everything up first.
VENV := .venv
BIN := $(VENV)/bin
SPECS := $(sort $(wildcard specs/*.yaml))
FIGURES := resnet50 googlenet unet swin_t

.PHONY: setup run test generated bench bench-models bench-training lint fuzz

setup: $(VENV)/.installed

# Debian's graphviz gives the `dot` binary (and the cairo library CairoSVG draws PNG/PDF with); pip pins everything through constraints.txt
# (torch==2.13.0 comes from the machine's local CPU wheel, so this must be pip, not uv).
$(VENV)/.installed: pyproject.toml constraints.txt
	command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz)
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[torch,flax,test,figures]"
	touch $@

run: setup
	$(BIN)/archc build specs/resnet50.yaml --backend torch
	$(BIN)/archc stats specs/resnet50.yaml

test: setup
	$(BIN)/python -m pytest

# Regenerate the committed outputs (the freshness test compares against these).
generated: setup
	for spec in $(SPECS); do \
	  $(BIN)/archc build $$spec --backend torch && \
	  $(BIN)/archc build $$spec --backend flax && \
	  $(BIN)/archc ir $$spec > generated/ir/$$(basename $$spec .yaml).txt || exit 1; \
	done
	for model in $(FIGURES); do $(BIN)/archc diagram specs/$$model.yaml -o docs/$$model.png || exit 1; done
	$(BIN)/archc compare $(SPECS) --plot docs/zoo.png > /dev/null
	$(BIN)/python tools/readme_zoo.py

# The fuzz soak: zoo mutants and random valid specs for MINUTES, counts by kind at the end.
MINUTES ?= 10
fuzz: setup
	$(BIN)/python -m tests.fuzz.soak --minutes $(MINUTES)

bench: setup
	$(BIN)/python bench/check_vs_flopcounter.py
	$(BIN)/python bench/scaling.py

# Generated models against torchvision's, inference; `python bench/models.py --help` for more.
bench-models: setup
	$(BIN)/python bench/models.py

# The generated training script against a plain torchvision loop; `--help` for the options.
bench-training: setup
	$(BIN)/python bench/training.py

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
