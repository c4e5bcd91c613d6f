# The two commands a new user types: `make run` and `make test`. Both install missing Debian packages
# first (scripts/deps.sh) and build with CMake: build/release for the binary and the integration tests,
# build/debug (ASan + UBSan) for the unit tests.
JOBS ?= $(shell nproc)
T ?=

.PHONY: all deps build run test unit integration testhost shell clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f build/release/CMakeCache.txt ] || cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@[ -f build/debug/CMakeCache.txt ] || cmake -S . -B build/debug -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build/release -j $(JOBS) -- --no-print-directory
	@cmake --build build/debug -j $(JOBS) -- --no-print-directory

run: build
	@scripts/demo

test: build
	@scripts/run-tests.sh

# Pieces of `make test`; T=NAME keeps the integration tests whose name contains NAME.
unit: build
	@cd build/debug && ctest --output-on-failure

integration: build
	@scripts/testhost run --timeout 3000 -- env KVMM_TEST_GROUP=main tests/integration/run.sh $(T)
	@scripts/testhost run --cpus 1 --timeout 3000 -- env KVMM_TEST_GROUP=one-cpu tests/integration/run.sh $(T)

testhost: deps
	@scripts/testhost build

shell: deps
	@scripts/testhost shell

clean:
	rm -rf build
