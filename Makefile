# maye-c build. `make` builds libmaye, the four stages and the orchestrator (CPU backend, no CUDA needed);
# `make test` runs every test; `make test-golden` only the reference-parity tests; `make deps` installs
# the Debian packages; `make bench`, `make fuzz` build (and run) benchmarks and fuzz targets.
# BUILD=dir puts all outputs in another directory (useful for parallel builds of one checkout).

BUILD ?= build
CC ?= gcc
OPT ?= -O3 -march=native
CFLAGS ?=
LDFLAGS ?=

# OpenBLAS: prefer the OpenMP-threaded build (it shares OpenMP's thread pool with our kernels).
OPENBLAS_DIR := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp))
ifneq ($(OPENBLAS_DIR),)
  OPENBLAS_INC := -I$(subst /lib/,/include/,$(OPENBLAS_DIR))
  OPENBLAS_LIB := -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
else
  OPENBLAS_INC := $(shell pkg-config --cflags openblas 2>/dev/null)
  OPENBLAS_LIB := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
endif

PKG_CFLAGS := $(shell pkg-config --cflags libpng libcjson cairo 2>/dev/null)
MAYE_CFLAGS := -std=gnu11 $(OPT) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
  -Wno-missing-field-initializers -Ilib -Itests -I$(BUILD)/gen $(OPENBLAS_INC) $(PKG_CFLAGS) -MMD -MP $(CFLAGS)
LIBS := -lprotobuf-c -lzstd -lyaml -lcjson -lpcre2-8 -lutf8proc -lpng16 -ljpeg $(OPENBLAS_LIB) -lm -lpthread
MAYE_LDFLAGS := -fopenmp $(LDFLAGS)
# only the orchestrator draws (maye synth, maye report)
ORCH_LIBS := $(shell pkg-config --libs cairo 2>/dev/null || echo -lcairo)

NVCC := $(shell command -v nvcc 2>/dev/null)

# ----------------------------------------------------------------------------
# sources

PROTO_C := $(BUILD)/gen/schemas/maye.pb-c.c
PROTO_H := $(BUILD)/gen/schemas/maye.pb-c.h
LIB_SRC := $(sort $(shell find lib -name '*.c'))
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/gen/maye.pb-c.o
LIBMAYE := $(BUILD)/libmaye.a

STAGES := batch rollout traj update
STAGE_BINS := $(patsubst %,$(BUILD)/bin/maye-%,$(STAGES))
ORCH_SRC := $(sort $(wildcard orchestrator/*.c))
ORCH_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(ORCH_SRC))
BINS := $(STAGE_BINS) $(BUILD)/bin/maye

TEST_SRC := $(sort $(shell find tests -name 'test_*.c'))
TEST_BINS := $(patsubst %.c,$(BUILD)/%,$(TEST_SRC))
TEST_SUPPORT_SRC := $(sort $(wildcard tests/support/*.c))
TEST_SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SUPPORT_SRC))
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(patsubst %.c,$(BUILD)/%,$(BENCH_SRC))

.PHONY: all lib test test-golden tests bench fuzz deps clean probe demo
all: probe $(BINS)
lib: $(LIBMAYE)

probe:
	@if [ -n "$(NVCC)" ]; then echo "make: nvcc found at $(NVCC) ($$($(NVCC) --version | tail -1)); the CPU build does not use it"; \
	else echo "make: nvcc not found; building the CPU backend only"; fi

# ----------------------------------------------------------------------------
# rules

$(PROTO_C) $(PROTO_H): schemas/maye.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/maye.pb-c.o: $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_CFLAGS) -c $< -o $@

# every object may include the generated header
$(BUILD)/obj/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_CFLAGS) -c $< -o $@

$(LIBMAYE): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

define STAGE_RULE
$(BUILD)/bin/maye-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(LIBMAYE)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(MAYE_LDFLAGS) -o $$@ $$(filter %.o,$$^) $$(LIBMAYE) $$(LIBS)
endef
$(foreach s,$(STAGES),$(eval $(call STAGE_RULE,$(s))))

$(BUILD)/bin/maye: $(ORCH_OBJ) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $(ORCH_OBJ) $(LIBMAYE) $(LIBS) $(ORCH_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(LIBMAYE) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(LIBMAYE) $(LIBS)

# ----------------------------------------------------------------------------
# tests, benchmarks, fuzzing

tests: $(BINS) $(TEST_BINS)

test: tests
	@BUILD=$(BUILD) sh tests/run.sh

test-golden: tests
	@BUILD=$(BUILD) sh tests/run.sh golden

bench: $(BINS) $(BENCH_BINS)
	@BUILD=$(BUILD) sh bench/run.sh

fuzz:
	@BUILD=$(BUILD) sh fuzz/build.sh

deps:
	sh .ci/deps.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
