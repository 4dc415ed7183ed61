# textxfer: install, demo, tests. Every target installs the pinned environment if needed.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
BACKBONE_DIR ?= backbones/minilm
DATA_MIRROR ?= ../shared/datasets
export TF_USE_LEGACY_KERAS := 1

.PHONY: install demo test test-deps lock backbone clean

install: $(STAMP)

# uv installs the fully pinned lock file without resolving; --compile-bytecode because this
# environment sets PYTHONDONTWRITEBYTECODE, which makes cold TensorFlow imports 4x slower.
$(STAMP): requirements.lock setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip sync --python $(VPY) --compile-bytecode requirements.lock
	$(UV) pip install --python $(VPY) --no-deps --compile-bytecode -e .
	touch $(STAMP)

backbone: $(BACKBONE_DIR)/saved_model.pb

$(BACKBONE_DIR)/saved_model.pb: | $(STAMP)
	$(VENV)/bin/textxfer export-backbone --from minilm --to $(BACKBONE_DIR)

# SST-2 labels: 0 = negative, 1 = positive. The last step loads the pushed model in a fresh
# process that imports only TensorFlow and tensorflow-text.
demo: install backbone
	$(VENV)/bin/textxfer run --config configs/sst2.yaml --data-mirror $(DATA_MIRROR)
	$(VENV)/bin/textxfer predict --model outputs/sst2/serving \
		"a gorgeous, witty, seductive movie." "the plot is nothing but boilerplate clichés"

test: install test-deps
	$(VPY) -m pytest tests

# The report's screenshot test opens the page in Debian's headless Chromium; installed once,
# when /usr/bin/chromium is missing (needs root and the Debian package mirror).
test-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Regenerate requirements.lock from requirements.in (needs the package registry).
lock: | $(STAMP)
	$(UV) pip compile requirements.in --override overrides.txt --python-version 3.11 \
		--generate-hashes -o requirements.lock
	cat lock-extra.txt >> requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
