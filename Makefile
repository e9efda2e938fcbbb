# omniconn: user-facing entry points. CMake does the building; this file only sequences it.
#
#   make demo          install missing packages, build, run the 3-stage demo pipeline
#   make test          unit tests, ASan/UBSan + TSan builds, fuzz smoke, install check,
#                      /dev/shm check
#   make test SANITIZERS=0   the same without the sanitizer builds and fuzzers (quick local run)
#   make fuzz [FUZZ_SECONDS=60]   every libFuzzer target for FUZZ_SECONDS each
#   make crash [CRASH_KILLS=100]  random SIGKILLs mid-transfer: leaks, hangs, corrupt deliveries
#   make soak [SOAK_SECONDS=300]  mixed SHM workload; memory/fd/maps slopes must be flat
#   make bench [BENCH_ARGS=--quick]   every benchmark and baseline: JSON, plots, docs tables
#   make build | install [PREFIX=...] | format | format-check | clean

SHELL := /bin/bash
.DEFAULT_GOAL := build
# Phases run in order; parallelism is inside each build (-j$(JOBS)).
.NOTPARALLEL:

JOBS       ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo
PREFIX     ?= /usr/local
SANITIZERS ?= 1
# Both compilers build the whole tree with -Werror: the main and ASan builds with g++, the
# TSan build with clang++.
GXX        ?= g++
CLANGXX    ?= clang++

BUILD_DIR := build
ASAN_DIR  := build-asan
TSAN_DIR  := build-tsan
FUZZ_DIR  := build-fuzz
FUZZ_SECONDS ?= 60
CRASH_KILLS ?= 100
CRASH_SEED ?= 1
SOAK_SECONDS ?= 300
ASAN_SANITIZE := address,undefined

export ASAN_OPTIONS  ?= halt_on_error=1:detect_leaks=1:print_stacktrace=1
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS  ?= halt_on_error=1 second_deadlock_stack=1

# Tests start real processes and use shared memory: run them one at a time.
CTEST := ctest --output-on-failure -j1 --no-tests=error

FORMAT_DIRS := src include tests bench examples tools python fuzz
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.cc' -o -name '*.h' \) 2>/dev/null)

.PHONY: deps build test test-unit test-asan test-tsan test-install test-fuzz fuzz crash soak demo \
        demo-transfer \
        bench install \
        format format-check clean

deps:
ifneq ($(SKIP_DEPS),1)
	@scripts/deps.sh
endif

# CMake's own make must not inherit this make's flags and variable overrides.
CMAKE_BUILD := env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build

# configure DIR COMPILER EXTRA-ARGS
define configure
	cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DCMAKE_CXX_COMPILER=$$(command -v $(2)) $(3)
endef

build: deps
	$(call configure,$(BUILD_DIR),$(GXX),)
	$(CMAKE_BUILD) $(BUILD_DIR) -j$(JOBS)

test-unit: build
	$(CTEST) --test-dir $(BUILD_DIR)

test-asan: deps
	$(call configure,$(ASAN_DIR),$(GXX),-DOMNICONN_SANITIZE=$(ASAN_SANITIZE) -DOMNICONN_BUILD_BENCH=OFF)
	$(CMAKE_BUILD) $(ASAN_DIR) -j$(JOBS)
	$(CTEST) --test-dir $(ASAN_DIR)

# The benchmarks are compiled here (not run) so that clang++ sees the whole tree.
test-tsan: deps
	$(call configure,$(TSAN_DIR),$(CLANGXX),-DOMNICONN_SANITIZE=thread -DOMNICONN_BUILD_BENCH=ON)
	$(CMAKE_BUILD) $(TSAN_DIR) -j$(JOBS)
	$(CTEST) --test-dir $(TSAN_DIR)

test-install: build
	JOBS=$(JOBS) scripts/install_check.sh $(BUILD_DIR)

SUB := $(MAKE) --no-print-directory SKIP_DEPS=1
SHM_BEFORE := $(BUILD_DIR)/devshm.before
PHASE := PHASE_LOG=$(BUILD_DIR)/phases.log scripts/phase.sh

# Cheap phases first, so that a broken build or install fails fast.
test: deps
	@mkdir -p $(BUILD_DIR) && rm -f $(BUILD_DIR)/phases.log
	@scripts/devshm.sh snapshot $(SHM_BEFORE)
	@$(PHASE) "build + tests (g++, $(BUILD_TYPE))" $(SUB) test-unit
	@scripts/devshm.sh check $(SHM_BEFORE) "the unit tests"
	@$(PHASE) "install check (find_package(omniconn))" $(SUB) test-install
ifneq ($(SANITIZERS),0)
	@$(PHASE) "ASan + UBSan build + tests (g++)" $(SUB) test-asan
	@scripts/devshm.sh check $(SHM_BEFORE) "the ASan/UBSan tests"
	@$(PHASE) "TSan build + tests (clang++)" $(SUB) test-tsan
	@$(PHASE) "fuzz smoke (clang++ libFuzzer + ASan/UBSan, 10 s per target)" $(SUB) test-fuzz
else
	@echo "(sanitizer builds skipped: SANITIZERS=0)"
endif
	@scripts/devshm.sh check $(SHM_BEFORE) "make test"
	@printf '\nmake test: all phases passed\n'; sed 's/^/  /' $(BUILD_DIR)/phases.log

# The main job: the Qwen2.5-Omni-shaped pipeline on automatic SharedMemoryConnectors.
demo: build
	$(BUILD_DIR)/tools/omniconn validate examples/qwen2_5_omni.yaml
	$(BUILD_DIR)/tools/omniconn run examples/qwen2_5_omni.yaml --requests 1000 --concurrency 16

# The two-process transfer demo (size / throughput / latency table).
demo-transfer: build
	$(BUILD_DIR)/examples/omniconn_demo

# Every benchmark and baseline (bench/run_all.py): JSON + plots in docs/bench/, tables in
# docs/benchmarks.md. BENCH_ARGS=--quick for a rough two-minute run.
bench: build
	/usr/bin/python3 bench/run_all.py --build-dir $(BUILD_DIR) $(BENCH_ARGS)

install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

format:
	@files="$(FORMAT_FILES)"; [ -z "$$files" ] || clang-format -i $$files

format-check:
	@bad=$$(for f in $(FORMAT_FILES); do clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "not clang-formatted (run make format):"; echo "$$bad"; exit 1; fi

# libFuzzer targets (fuzz/): seed corpora in fuzz/corpus, never written by a run.
fuzz: deps
	JOBS=$(JOBS) scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_DIR)

test-fuzz: deps
	JOBS=$(JOBS) scripts/fuzz.sh --smoke $(FUZZ_DIR)

crash: build
	$(BUILD_DIR)/tests/crash/crash_harness --kills $(CRASH_KILLS) --seed $(CRASH_SEED) \
	  --time-limit 300 --json $(BUILD_DIR)/crash.json

soak: build
	BUILD_DIR=$(BUILD_DIR) JOBS=$(JOBS) scripts/soak.sh $(SOAK_SECONDS)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
