# Every target creates .venv and installs the project (-e .[dev]) on first use, so each works on a
# fresh machine. `make help` lists targets and variables.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

# ---- data / shards ----
DEMO_DIR := data/demo
DEMO_SHARDS := data/shards/demo
DATA_DIR ?=
ifeq ($(strip $(DATA_DIR)),)
  SHARDS_IN := $(DEMO_DIR)
  OUTPUT_DIR ?= $(DEMO_SHARDS)
else
  SHARDS_IN := $(DATA_DIR)
  OUTPUT_DIR ?= data/shards/$(notdir $(patsubst %/,%,$(DATA_DIR)))
endif
RUNNER ?= DirectRunner
BEAM_ARGS ?=
SHARDS_ARGS ?=

# ---- training / inference ----
SHARDS ?= $(DEMO_SHARDS)
SHARDS_NAME = $(notdir $(patsubst %/,%,$(SHARDS)))
FOLD ?= 0
FOLDS ?= 0 1 2 3 4
RUN_DIR ?= runs/$(SHARDS_NAME)/fold$(FOLD)
RUNS_ROOT ?= runs/$(SHARDS_NAME)
RUNS ?=
OUT ?= $(RUNS_ROOT)/submission.csv
BASELINE_DIR ?= $(RUNS_ROOT)/baseline
PRETRAIN_DIR ?= $(RUNS_ROOT)/pretrain
# ---- export (trainer.inference.export): RUN = a run dir, or a runs root for the CV ensemble ----
RUN ?= $(RUN_DIR)
EXPORT ?= exports/$(SHARDS_NAME)
ARGS ?=
BENCH_ARGS ?=
BENCH_ISAS ?= native avx2
# ---- pictures (trainer.data.inspect_examples, trainer.inference.timelines) ----
N ?= 16
INSPECT_DIR ?= $(RUNS_ROOT)/inspect
PLOTS ?=
PLOT_DIR ?= $(RUNS_ROOT)/timelines

# ---- detection (detect.run) ----
MODEL ?=
AUDIO ?=

# ---- Dataflow ----
PROJECT ?=
REGION ?=
BUCKET ?=

.PHONY: help venv shards shards-dataflow demo-data train cv pretrain pseudo baseline predict export inspect detect detect-dataflow \
	import-annotations test bench bench-export clean

help:
	@echo "make shards [DATA_DIR=dir] [OUTPUT_DIR=dir] [RUNNER=DirectRunner] [BEAM_ARGS='...'] [SHARDS_ARGS='--overwrite ...']"
	@echo "make shards-dataflow DATA_DIR=gs://... PROJECT=p REGION=r BUCKET=b [OUTPUT_DIR=gs://...]"
	@echo "make train FOLD=0 [SHARDS=dir] [RUN_DIR=dir] [ARGS='--epochs 3 --preset tiny ...']"
	@echo "make cv [FOLDS='0 1 2 3 4'] [SHARDS=dir] [ARGS=...]"
	@echo "make pretrain [SHARDS=dir] [PRETRAIN_DIR=runs/<shards>/pretrain] [ARGS='--preset cpu --pretrain.epochs 10 ...'] (then make cv ARGS='... --init_from dir')"
	@echo "make pseudo [SHARDS=dir] [RUNS_ROOT=runs/<shards>] [ARGS='--rounds 2 ...'] (after make cv)"
	@echo "make baseline [SHARDS=dir] [BASELINE_DIR=runs/<shards>/baseline] [ARGS='--unlabelled_weight 0 ...']"
	@echo "make predict [RUNS='runs/demo/fold0 ...'] [SHARDS=dir] [OUT=file.csv] [PLOTS=1 (timelines in PLOT_DIR)] [ARGS='--blend_baseline off ...']"
	@echo "make detect MODEL=export_dir AUDIO=folder|gs://... OUT=dir [ARGS='--threshold 0.7 --embeddings ...'] [BEAM_ARGS=...]"
	@echo "make detect-dataflow MODEL=gs://... AUDIO=gs://... OUT=gs://... PROJECT=p REGION=r BUCKET=b [ARGS=...]"
	@echo "make export [RUN=runs/demo/fold0, or a runs root for the CV ensemble] [EXPORT=exports/<shards>] [ARGS='--stride_seconds 1.5 --overwrite ...']"
	@echo "make inspect [SHARDS=dir] [FOLD=0] [N=16] [INSPECT_DIR=runs/<shards>/inspect] [ARGS='--unaugmented_beside ...']"
	@echo "make bench [SHARDS=dir DATA_DIR=its dataset] [BENCH_ARGS='--quick ...'] [BENCH_ISAS='native avx2']"
	@echo "make bench-export [RUN=runs/demo/fold0] [SHARDS=dir] [BENCH_ARGS='--max_recordings 8 --threads 2 ...']"
	@echo "make test | make clean"

venv: $(STAMP)
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,detect,dev]'
	touch $@

# The demo dataset is generated once; the job refuses to overwrite existing shards unless
# SHARDS_ARGS=--overwrite is given.
$(DEMO_DIR)/train_tp.csv: | $(STAMP)
	$(PY) -m pipeline.demo_data $(DEMO_DIR)

demo-data: $(DEMO_DIR)/train_tp.csv

shards: $(STAMP) $(if $(strip $(DATA_DIR)),,$(DEMO_DIR)/train_tp.csv)
	$(PY) -m pipeline.shards --data_dir $(SHARDS_IN) --output_dir $(OUTPUT_DIR) \
		--runner $(RUNNER) $(SHARDS_ARGS) $(BEAM_ARGS)

# Built on demand by train/cv/predict when the default demo shards are missing.
$(DEMO_SHARDS)/manifest.json: | $(STAMP) $(DEMO_DIR)/train_tp.csv
	$(PY) -m pipeline.shards --data_dir $(DEMO_DIR) --output_dir $(DEMO_SHARDS) --runner DirectRunner

shards-dataflow: $(STAMP)
	@test -n "$(DATA_DIR)" -a -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(BUCKET)" || \
		{ echo "error: shards-dataflow needs DATA_DIR=gs://... PROJECT=... REGION=... BUCKET=..."; exit 2; }
	$(PY) -m pip install -q -e '.[gcp]'
	$(PY) -m pipeline.shards --data_dir $(DATA_DIR) \
		--output_dir $(if $(filter gs://%,$(OUTPUT_DIR)),$(OUTPUT_DIR),gs://$(BUCKET)/shards/$(notdir $(patsubst %/,%,$(DATA_DIR)))) \
		--runner DataflowRunner --project $(PROJECT) --region $(REGION) \
		--temp_location gs://$(BUCKET)/tmp --staging_location gs://$(BUCKET)/staging \
		--setup_file ./setup.py $(SHARDS_ARGS) $(BEAM_ARGS)

DEMO_DEP = $(if $(filter $(DEMO_SHARDS),$(SHARDS)),$(DEMO_SHARDS)/manifest.json,)

train: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.training.train --shards_dir $(SHARDS) --fold $(FOLD) --run_dir $(RUN_DIR) $(ARGS)

cv: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.training.cv --shards_dir $(SHARDS) --folds $(FOLDS) --runs_root $(RUNS_ROOT) $(ARGS)

# Pseudo-label rounds after `make cv`: out-of-fold soft targets -> a cross-validation trained on them,
# into RUNS_ROOT/pseudo/roundR (resumable; rounds.md holds each round's OOF and test LWLRAP).
pseudo: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.pseudo --shards_dir $(SHARDS) --runs_root $(RUNS_ROOT) $(ARGS)

# Contrastive pretraining of the backbone on the shards' unlabelled audio (train slices and test recordings);
# the folds start from it with ARGS='... --init_from $(PRETRAIN_DIR)'.
pretrain: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.pretrain --shards_dir $(SHARDS) --out_dir $(PRETRAIN_DIR) $(ARGS)

# The floor every model must beat: log-mel band statistics + logistic regression, same folds.
baseline: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.baseline.run --shards_dir $(SHARDS) --out_dir $(BASELINE_DIR) $(ARGS)

predict: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.inference.predict --shards_dir $(SHARDS) --output $(OUT) \
		$(if $(strip $(RUNS)),$(foreach r,$(RUNS),--run_dir $(r)),--runs_root $(RUNS_ROOT)) \
		$(if $(filter 1,$(PLOTS)),--plot_dir $(PLOT_DIR)) $(ARGS)

# An exported model (make export) over a folder or bucket of recordings -> OUT/detections.csv, OUT/raven/.
# Re-running the same command resumes (recordings already done are skipped).
detect: $(STAMP)
	@test -n "$(MODEL)" -a -n "$(AUDIO)" -a -n "$(filter-out $(RUNS_ROOT)/submission.csv,$(OUT))" || \
		{ echo "error: detect needs MODEL=<export dir> AUDIO=<folder or gs://...> OUT=<dir>"; exit 2; }
	$(PY) -m detect.run --model $(MODEL) --audio $(AUDIO) --out $(OUT) --runner $(RUNNER) $(ARGS) $(BEAM_ARGS)

# Workers install the project with the detect extra's TensorFlow and pyarrow (detect/requirements-worker.txt).
detect-dataflow: $(STAMP)
	@test -n "$(MODEL)" -a -n "$(AUDIO)" -a -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(BUCKET)" || \
		{ echo "error: detect-dataflow needs MODEL=gs://... AUDIO=gs://... PROJECT=... REGION=... BUCKET=..."; exit 2; }
	$(PY) -m pip install -q -e '.[gcp]'
	$(PY) -m detect.run --model $(MODEL) --audio $(AUDIO) \
		--out $(if $(filter gs://%,$(OUT)),$(OUT),gs://$(BUCKET)/detections/$(notdir $(patsubst %/,%,$(AUDIO)))) \
		--runner DataflowRunner --project $(PROJECT) --region $(REGION) \
		--temp_location gs://$(BUCKET)/tmp --staging_location gs://$(BUCKET)/staging \
		--setup_file ./setup.py --requirements_file detect/requirements-worker.txt $(ARGS) $(BEAM_ARGS)

# Raven selection tables (or a CSV of boxes) -> train_tp.csv / train_fp.csv for `make shards`.
import-annotations: $(STAMP)
	$(PY) -m pipeline.import_annotations $(ARGS)

# A SavedModel (recording and window signatures), TFLite float32 and int8, metadata.json: core.export_layout.
export: $(STAMP)
	$(PY) -m trainer.inference.export --run $(RUN) --export_dir $(EXPORT) $(ARGS)

# A grid of training examples as the trainer feeds them, with their tp/fp boxes (no model needed).
inspect: $(STAMP) $(DEMO_DEP)
	$(PY) -m trainer.data.inspect_examples --shards_dir $(SHARDS) --fold $(FOLD) --n $(N) --out_dir $(INSPECT_DIR) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# bench_shards generates its own datasets; bench_input and bench_train read SHARDS, and bench_input's
# seed generator the dataset those came from (the demo's for the default SHARDS, else DATA_DIR).
# BENCH_ARGS go to bench_input and bench_train (e.g. --quick, --fold 1, --out dir). bench_train also times the
# cpu preset on the AVX2-only path (its --isas; BENCH_ISAS=native skips that).
bench: $(STAMP) $(DEMO_DEP)
	$(PY) -m benchmarks.bench_shards
	$(PY) -m benchmarks.bench_input --shards_dir $(SHARDS) $(if $(strip $(DATA_DIR)),--data_dir $(DATA_DIR)) $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_train --shards_dir $(SHARDS) --isas $(BENCH_ISAS) $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_detect $(if $(strip $(MODEL)),--model $(MODEL))

# Real-time factor and test LWLRAP of the Keras, SavedModel and TFLite float/int8 forms of RUN (minutes).
bench-export: $(STAMP) $(DEMO_DEP)
	$(PY) -m benchmarks.bench_export --run $(RUN) --shards_dir $(SHARDS) $(BENCH_ARGS)

clean:
	rm -rf runs exports bench_out .pytest_cache
