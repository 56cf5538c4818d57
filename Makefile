# yoto — build, test, demo. `make help` lists the targets.
#
# Three builds of the same sources, each in its own directory:
#   build/rel   bin/yoto and the float unit tests          (make, make test)
#   build/dbl   -DYOTO_DOUBLE: numerics in double, for gradient checks
#   build/asan  ASan + UBSan, failing on the first UB       (make check-asan)
# and build/fuzz: the libFuzzer harnesses of tests/fuzz/  (make fuzz, clang)

VERSION := 0.1.0
GIT_COMMIT := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)

CC := mpicc
PKGS := hdf5-openmpi openblas yaml-0.1 libpng zlib
# `=` (not `:=`): expanded when a recipe runs, i.e. after `deps` installed pkg-config files
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))

OPT ?= -O2
WERROR ?=
# -ffp-contract=fast: a*b + c may become one FMA. -std=c11 turns contraction
# off; it only matters in the functions compiled for AVX2 + FMA as well
# (src/simd.h), since the x86-64 baseline has no FMA. -fno-math-errno:
# nothing reads errno after libm calls, and sqrt etc. can then vectorise.
# -pthread: train.threads threads inside a rank run yoto's kernels (src/par.h).
# -Wno-psabi: GCC's note that passing 32-byte vectors by value changed ABI in
# GCC 4.6, printed for simd.h's static inline helpers; none crosses an ABI.
CFLAGS_COMMON = -std=c11 -D_DEFAULT_SOURCE -g -Wall -Wextra -Wno-psabi $(WERROR) \
                -ffp-contract=fast -fno-math-errno -pthread -Iinclude \
                $(PKG_CFLAGS) -DYOTO_VERSION='"$(VERSION)"' -DYOTO_GIT_COMMIT='"$(GIT_COMMIT)"'
LDLIBS = $(PKG_LIBS) -lm -pthread

SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

# The numerics' hot loops get -O3 (the loop vectoriser: Adam's update, the
# element-wise layers' scalar tails); the rest of the program stays at $(OPT).
# Their debug information is line tables only (-g1: backtraces, perf and
# gdb by line, no local variables): full -g took convs.c's 288 unrolled
# kernels from 29 to 43 s to compile, the longest step of every build.
HOT_SRCS := convb convk convs convw layers loss optim
HOT_OPT ?= -O3 -g1

# per-build flags
FLAGS_rel  = $(OPT)
FLAGS_dbl  = $(OPT) -DYOTO_DOUBLE
FLAGS_asan = -O1 $(SAN_FLAGS)
HOT_rel = $(HOT_OPT)
HOT_dbl = $(HOT_OPT)
LDFLAGS_asan = $(SAN_FLAGS)
# bin/yoto-avx512 (make avx512): the float build for CPUs with AVX-512 only,
# one 16-float vector per rvec (src/simd.h), no baseline copies
FLAGS_avx512 = $(OPT) -march=x86-64-v4 -mprefer-vector-width=512 -DSIMD_BYTES=64
HOT_avx512 = $(HOT_OPT)

SRCS := $(wildcard src/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
MPI_TESTS := $(patsubst tests/mpi/%.c,%,$(wildcard tests/mpi/test_*.c))
TEST_SUPPORT := $(wildcard tests/support/*.c)

objs = $(patsubst src/%.c,build/$(1)/src/%.o,$(2))
support_objs = $(patsubst tests/support/%.c,build/$(1)/tests/support/%.o,$(TEST_SUPPORT))

.PHONY: all avx512 deps deps-fuzz test check-valgrind check-asan fuzz mutants print-cflags print-ldlibs demo clean help
.DEFAULT_GOAL := all
.SECONDARY:

all: bin/yoto

help:
	@echo "make              build bin/yoto (installs missing Debian packages first)"
	@echo "make deps         install every Debian package the project needs (apt-get)"
	@echo "make test         build everything and run all tests; ends with 'N passed, N failed'"
	@echo "make demo         train, evaluate and plot on the real Fashion-MNIST (2 ranks)"
	@echo "make avx512       bin/yoto-avx512: kernels for AVX-512 CPUs only (faster there)"
	@echo "make check-asan   unit, MPI and end-to-end tests under ASan + UBSan (bin/yoto-asan)"
	@echo "make check-valgrind  unit tests under valgrind (Open MPI noise suppressed)"
	@echo "make fuzz         libFuzzer on configs, IDX, CIFAR-10, data files, checkpoints"
	@echo "                  (FUZZ_SECONDS=60 each; installs clang-14 first)"
	@echo "make mutants      mutation testing: each tests/mutants/*.patch must fail its suites"
	@echo "make WERROR=-Werror  warnings as errors (what CI builds)"

# ---- dependencies -----------------------------------------------------------
# Debian 12 packages. `deps` is a quick no-op (one dpkg-query) when all are
# installed, and every build goes through it, so a fresh machine needs nothing
# but `make`. Installing needs root (or sudo). NO_DEPS=1 skips it (a cluster
# with modules: docs/CLUSTER.md).
DEB_BUILD := gcc make pkg-config git openmpi-bin libopenmpi-dev libhdf5-openmpi-dev \
             libopenblas-dev libyaml-dev librandom123-dev libpng-dev zlib1g-dev
DEB_TEST  := libcmocka-dev hdf5-tools valgrind python3 python3-h5py python3-numpy python3-yaml \
             slurm-wlm slurmctld slurmd slurm-client munge \
             python3-matplotlib procps qemu-user patch
DEB_DATA  := dataset-fashion-mnist
DEB_ALL   := $(DEB_BUILD) $(DEB_TEST) $(DEB_DATA)
# only for `make fuzz` (clang's libFuzzer and its sanitizer runtimes)
DEB_FUZZ  := clang-14 libclang-rt-14-dev

deps-fuzz: DEB_ALL := $(DEB_FUZZ)
deps deps-fuzz:
	@[ -z "$(NO_DEPS)" ] || exit 0; \
	installed=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(DEB_ALL) 2>/dev/null \
	    | awk '$$NF == "installed" {print $$1}'); \
	missing=; for p in $(DEB_ALL); do \
	    echo "$$installed" | grep -qx "$$p" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing" $$missing; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "make deps: apt-get failed; install by hand:" $$missing; exit 1; }; \
	fi

# ---- the three builds ---------------------------------------------------------
define build_rules
build/$(1)/src/%.o: src/%.c | deps
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$(FLAGS_$(1)) $$(if $$(filter $$*,$(HOT_SRCS)),$$(HOT_$(1))) -MMD -MP -c $$< -o $$@

build/$(1)/tests/support/%.o: tests/support/%.c | deps
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$(FLAGS_$(1)) -Itests/support -MMD -MP -c $$< -o $$@

build/$(1)/tests/%: tests/unit/%.c $(call objs,$(1),$(LIB_SRCS)) $$(call support_objs,$(1)) | deps
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$(FLAGS_$(1)) -Itests/support -MMD -MP $$< \
	    $(call objs,$(1),$(LIB_SRCS)) $$(call support_objs,$(1)) -o $$@ $$(LDFLAGS_$(1)) $$(LDLIBS) -lcmocka

build/$(1)/tests/%: tests/mpi/%.c $(call objs,$(1),$(LIB_SRCS)) $$(call support_objs,$(1)) | deps
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$(FLAGS_$(1)) -Itests/support -MMD -MP $$< \
	    $(call objs,$(1),$(LIB_SRCS)) $$(call support_objs,$(1)) -o $$@ $$(LDFLAGS_$(1)) $$(LDLIBS) -lcmocka

bin/yoto$(2): $(call objs,$(1),$(SRCS)) | deps
	@mkdir -p $$(@D)
	$$(CC) $$^ -o $$@ $$(LDFLAGS_$(1)) $$(LDLIBS)
endef
$(eval $(call build_rules,rel,))
$(eval $(call build_rules,dbl,-double))
$(eval $(call build_rules,asan,-asan))
$(eval $(call build_rules,avx512,-avx512))

# The git commit goes into common.o: rebuild it when HEAD moves.
GIT_STAMP := build/git-commit
$(shell mkdir -p build; [ "$$(cat $(GIT_STAMP) 2>/dev/null)" = "$(GIT_COMMIT)" ] || echo "$(GIT_COMMIT)" > $(GIT_STAMP))
build/rel/src/common.o build/dbl/src/common.o build/asan/src/common.o build/avx512/src/common.o: $(GIT_STAMP)

-include $(shell find build -name '*.d' 2>/dev/null)

tests_for = $(addprefix build/$(1)/tests/,$(UNIT_TESTS) $(MPI_TESTS))
units_for = $(addprefix build/$(1)/tests/,$(UNIT_TESTS))

# ---- tests ----------------------------------------------------------------------
# unit tests in both builds and (tests/run.sh isa) the SIMD ones on the baseline
# copies under qemu, (avx512) the unit tests of the AVX-512 build where the CPU
# has it, MPI tests in both builds at 3 rank counts, end to end
test: bin/yoto bin/yoto-double bin/yoto-avx512 $(call tests_for,rel) $(call tests_for,dbl) \
      $(call units_for,avx512)
	@tests/run.sh

# bin/yoto-avx512: faster kernels on AVX-512 CPUs (docs/DESIGN.md, Performance)
avx512: bin/yoto-avx512

# the same tests against the ASan + UBSan build (clones off: baseline code)
check-asan: bin/yoto-asan bin/yoto-double $(call tests_for,asan)
	@YOTO_VARIANTS=asan YOTO_MPI_VARIANTS=asan YOTO_E2E_VARIANTS=asan tests/run.sh unit mpi e2e

# every hand-written mutant in tests/mutants/ must fail the suites it names
mutants: bin/yoto $(call tests_for,rel) $(call tests_for,dbl)
	@tests/mutants/run.sh

check-valgrind: $(call tests_for,rel)
	@YOTO_VALGRIND=1 YOTO_VARIANTS=rel tests/run.sh unit

# ---- fuzzing --------------------------------------------------------------------
# clang-14 through mpicc (OMPI_CC), every library source but the SIMD numerics
# and model.c (they include src/simd.h, which is GCC-only: clang stopped at
# __builtin_shuffle once model.c's chains included it; no harness reaches
# them) instrumented for
# libFuzzer, ASan and UBSan, in an archive: a harness links what it calls.
# tests/fuzz/run.sh runs each harness FUZZ_SECONDS from tests/fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_CC := OMPI_CC=clang-14 mpicc
FUZZ_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link
FUZZ_LIB_SRCS := $(filter-out $(addprefix src/,$(addsuffix .c,$(HOT_SRCS) model)),$(LIB_SRCS))
FUZZ_HARNESSES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

build/fuzz/src/%.o: src/%.c | deps-fuzz deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CFLAGS_COMMON) $(FUZZ_FLAGS) -MMD -MP -c $< -o $@

build/fuzz/libyoto.a: $(call objs,fuzz,$(FUZZ_LIB_SRCS))
	rm -f $@ && ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libyoto.a | deps-fuzz
	$(FUZZ_CC) $(CFLAGS_COMMON) $(FUZZ_FLAGS) -fsanitize=fuzzer -MMD -MP $< build/fuzz/libyoto.a \
	    -o $@ $(LDLIBS)

fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ_HARNESSES))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_HARNESSES)

# the release build's flags, for scripts that compile a helper (tests/fuzz/make_seeds.sh)
print-cflags:
	@echo $(CFLAGS_COMMON) $(FLAGS_rel)
print-ldlibs:
	@echo $(LDLIBS)

# ---- demo -----------------------------------------------------------------------
demo: bin/yoto
	@jobs/demo.sh

clean:
	rm -rf build bin tests/out
