# Thin wrapper over CMake: `make`, `make test`, `make bench`, `make asan-test`.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps run test asan-test bench bench-compare format clean

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	scripts/install-deps.sh

# Installs what is missing (Chromium for the browser tests too), builds with -Werror, runs
# every test.
test:
	scripts/install-deps.sh --browser
	cmake -S . -B $(BUILD) -DCASCADE_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan-test:
	scripts/install-deps.sh --browser
	cmake -S . -B build-asan -DCASCADE_WERROR=ON -DCASCADE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# Installs what is missing, builds, starts the server in the foreground with its defaults
# (ports 7400-7402 on 127.0.0.1, data in ./cascaded-data) and loads the sample dump into it.
# Ctrl-C stops it cleanly. RUN_ARGS="..." passes options to cascaded.
run: deps all
	scripts/run-with-sample.sh $(BUILD) $(RUN_ARGS)

# The benchmark suite (bench/run-suite.sh) on a Release build in build-bench, peers included;
# writes bench/results/suite-<date>.md and .json. A few minutes.
bench: deps
	scripts/install-bench-deps.sh
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build-bench -j $(JOBS)
	bench/run-suite.sh build-bench

# A change against its parent in the same run (bench/compare-builds.sh): Release builds of BASE
# (a commit, default HEAD~1, built in a scratch worktree) and of the working tree, alternating
# ingest and query rounds; prints medians and new/base ratios. ROUNDS=3 by default.
BASE ?= HEAD~1
ROUNDS ?= 3
bench-compare: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCASCADE_WEB=OFF $(CMAKE_FLAGS)
	cmake --build build-bench -j $(JOBS)
	rm -rf build-bench-base && git worktree prune
	git worktree add --detach build-bench-base/src $(BASE)
	cmake -S build-bench-base/src -B build-bench-base/build -DCMAKE_BUILD_TYPE=Release -DCASCADE_WEB=OFF $(CMAKE_FLAGS)
	cmake --build build-bench-base/build -j $(JOBS)
	bench/compare-builds.sh build-bench-base/build build-bench $(ROUNDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-bench build-bench-base
	git worktree prune
