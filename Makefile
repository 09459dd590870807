# The two commands of the README: `make demo` and `make test`.
# Both install what is missing (scripts/deps.sh), configure and build into build/.
BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
GEN     := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
CMAKE_ARGS ?=

.PHONY: all deps configure build test demo install clean bench test-asan test-tsan fuzz fuzz-build fuzz-smoke test-examples

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole toolkit end to end on the embedded default (examples/quickstart.sh): results table on the
# terminal, pictures in demo-out/.
demo: build
	sh examples/quickstart.sh $(BUILD)

# Every example workflow of examples/ end to end on phantoms with its checks (`make -C examples/X
# test`, in examples/X/out/test), one after the other, each saying how long it took. Not part of
# `make test`. EXAMPLES picks some: make test-examples EXAMPLES="classify-probe embed-shards".
EXAMPLES ?= classify-probe segment-chexmask continued-pretraining embed-shards compare-encoders multinode-pretraining report-generation
test-examples: build
	@for e in $(EXAMPLES); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory -C examples/$$e test BIN="$(abspath $(BUILD))/bin" || exit 1; \
	  echo "test-examples: $$e passed in $$(($$(date +%s) - start)) s"; \
	done
	@start=$$(date +%s); \
	CX_DEMO_DIR="$(abspath $(BUILD))/quickstart-test" CX_DEMO_STEPS=20 sh examples/quickstart.sh $(BUILD) > "$(abspath $(BUILD))/quickstart-test.txt" && \
	  test "$$(grep -c '\[[0-9.-]*, ' "$(abspath $(BUILD))/quickstart-test.txt")" -eq 12 || { cat "$(abspath $(BUILD))/quickstart-test.txt"; exit 1; }; \
	echo "test-examples: quickstart (make demo, 20 pretraining steps) passed in $$(($$(date +%s) - start)) s"

# Tools, man pages, share/cx (recipes, label sets) and bash completion under PREFIX; DESTDIR stages
# the tree elsewhere (packaging), as GNU's conventions say.
PREFIX  ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

bench: build
	sh bench/run-all.sh $(BUILD)

# Fuzzing (fuzz/README.md): clang, libFuzzer, ASan + UBSan, in build-fuzz/ beside the normal build.
# `make fuzz` runs every target FUZZ_TIME seconds, one after the other (FUZZ_TARGETS="png nih ..."
# picks some); `make fuzz-smoke` replays the committed seeds and fuzzes each target ~20 s.
# Neither is part of `make test`.
FUZZ_BUILD   ?= build-fuzz
FUZZ_TIME    ?= 600
FUZZ_TARGETS ?=

$(FUZZ_BUILD)/CMakeCache.txt:
	cmake -S . -B $(FUZZ_BUILD) $(GEN) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCX_FUZZ=ON -DCX_BUILD_TESTS=OFF -DCCACHE_PROGRAM=CCACHE_PROGRAM-NOTFOUND

fuzz-build: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) --target cx_fuzzers -j $(JOBS)

fuzz: fuzz-build
	sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	sh fuzz/run.sh --smoke $(FUZZ_BUILD) 20 $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD)

# Sanitizer builds, each in its own folder (not part of `make test`; see SECURITY.md).
# test-asan: every unit and CLI test under ASan + UBSan (LeakSanitizer off: LibTorch's and DCMTK's
# process-lifetime globals are reported as leaks). test-tsan: the threaded paths that are ours
# (ordered worker pools of cx-ingest and cx-phantom, concurrent DICOM decoding, prefetching
# readers); LibTorch's OpenMP is not TSan-instrumented, so its tests would report its own pool.
# CX_SANITIZED tells the Bats tests that use address-space limits (ulimit -v) to skip.
TSAN_TARGETS = util_test data_ingest_test dicom_test phantom_test io_stream_test cx-ingest cx-phantom cx-eval
TSAN_TESTS   = unit/(util|data_ingest|dicom|phantom|io_stream)_test|cli/cx-(ingest|phantom)

test-asan: deps
	cmake -S . -B build-asan $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCX_SANITIZE=address $(CMAKE_ARGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && CX_SANITIZED=address ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-tsan: deps
	cmake -S . -B build-tsan $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCX_SANITIZE=thread $(CMAKE_ARGS)
	cmake --build build-tsan -j $(JOBS) --target $(TSAN_TARGETS)
	cd build-tsan && CX_SANITIZED=thread TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)' $(CTEST_ARGS)
