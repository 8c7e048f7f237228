# maye-c build. `make` builds libmaye, the four stages and the orchestrator (CPU backend, no CUDA needed);
# `make demo` runs the main job (the CPU demo); `make test` runs every test; `make test-golden` only the
# reference-parity tests; `make deps` installs the Debian packages; `make bench`, `make fuzz` build (and
# run) benchmarks and fuzz targets.
# BUILD=dir puts all outputs in another directory (useful for parallel builds of one checkout).
# CUDA=1 (default off) also builds the CUDA kernel layer, the GPU model and the stages' CUDA backend:
# lib/kernels/cuda/*.cu, lib/model/cuda/*.cu and lib/backend/*.cu -> $(BUILD)/libmaye_cuda.a (nvcc, sm_90a for
# H100/H200; CUDA_ARCH=... for others), which the stages and maye then link (model.device=cuda), the CUDA
# tests tests/cuda/test_*.cu -> $(BUILD)/tests/cuda/ (they exit 77, a skip, without a GPU) and the GPU
# benchmarks bench/gpu_*.cu; `make CUDA=1 gpu-check` builds and runs them all (bench/gpu.sh), `make CUDA=1
# gpu-bundle` packs them for another machine. Without CUDA=1 nothing needs nvcc.
# CUDA_EMU=1 builds the same CUDA sources with g++ for the CPU emulator (tests/cuda_emu/README.md): `make test`
# ends with the CUDA tests run that way (build in $(BUILD)/emu, ~12 min on 2 cores; CUDA_EMU_TESTS=0 skips).

BUILD ?= build
CUDA ?= 0
CUDA_EMU ?= 0
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
MAYE_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(OPT) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
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
# tests/cuda_emu/test_*.cc: CUDA kernel headers compiled by g++ and run on the CPU emulator (no CUDA toolkit)
EMU_TEST_SRC := $(sort $(wildcard tests/cuda_emu/test_*.cc))
EMU_TEST_BINS := $(patsubst %.cc,$(BUILD)/%,$(EMU_TEST_SRC))
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(patsubst %.c,$(BUILD)/%,$(BENCH_SRC))

.PHONY: all lib test test-golden tests bench fuzz deps clean probe demo
# test objects are intermediate files of the test binaries; keep them so nothing relinks needlessly
.SECONDARY:
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

# BACKEND_LIBS / BACKEND_SYSLIBS: the CUDA backend in CUDA=1 builds (set in the CUDA section), else empty
define STAGE_RULE
$(BUILD)/bin/maye-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard stages/$(1)/*.c)) $(LIBMAYE)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(MAYE_LDFLAGS) -o $$@ $$(filter %.o,$$^) $$(BACKEND_LIBS) $$(LIBMAYE) $$(LIBS) $$(BACKEND_SYSLIBS)
endef
$(foreach s,$(STAGES),$(eval $(call STAGE_RULE,$(s))))

$(BUILD)/bin/maye: $(ORCH_OBJ) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $(ORCH_OBJ) $(BACKEND_LIBS) $(LIBMAYE) $(LIBS) $(ORCH_LIBS) $(BACKEND_SYSLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(LIBMAYE) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(LIBMAYE) $(LIBS)

# the kernels pun types through reinterpret_cast as nvcc allows: no strict aliasing
EMU_CXXFLAGS := -std=c++17 -O2 -g -DMAYE_CUDA_EMU -fno-strict-aliasing -Wall -Wextra -Wno-unused-parameter \
  -Wno-unknown-pragmas -Itests/cuda_emu/include -Ilib -Itests -I$(BUILD)/gen -MMD -MP $(CXXFLAGS)

$(BUILD)/obj/tests/cuda_emu/%.o: tests/cuda_emu/%.cc $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

# the emulator's runtime API and cuBLAS (memory, streams, graphs, IPC, GEMMs), linked into every emulator binary
EMU_RT_OBJ := $(BUILD)/obj/tests/cuda_emu/cuda_emu_runtime.o $(BUILD)/obj/tests/cuda_emu/cuda_emu_blas.o

$(EMU_TEST_BINS): $(BUILD)/tests/cuda_emu/%: $(BUILD)/obj/tests/cuda_emu/%.o $(EMU_RT_OBJ) $(TEST_SUPPORT_OBJ) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CXX) $(MAYE_LDFLAGS) -o $@ $< $(EMU_RT_OBJ) $(TEST_SUPPORT_OBJ) $(LIBMAYE) $(LIBS)

# ----------------------------------------------------------------------------
# tests, benchmarks, fuzzing

tests: $(BINS) $(TEST_BINS) $(EMU_TEST_BINS)

# then the CUDA tests on the CPU emulator, from their own build ($(BUILD)/emu; CUDA_EMU_TESTS=0 skips them)
CUDA_EMU_TESTS ?= 1
test: tests
	@BUILD=$(BUILD) sh tests/run.sh
ifeq ($(CUDA_EMU_TESTS)$(CUDA_EMU),10)
	@echo "make: the CUDA tests on the CPU emulator (make CUDA_EMU=1 BUILD=$(BUILD)/emu test-cuda-emu)"
	@$(MAKE) --no-print-directory CUDA=0 CUDA_EMU=1 BUILD=$(BUILD)/emu test-cuda-emu
endif

test-golden: tests
	@BUILD=$(BUILD) sh tests/run.sh golden

bench: $(BINS) $(BENCH_BINS)
	@BUILD=$(BUILD) sh bench/run.sh

fuzz:
	@BUILD=$(BUILD) sh fuzz/build.sh

deps:
	sh .ci/deps.sh

# the main job: the CPU demo (configs/demo/run.sh), synth -> init -> SFT -> RL x 3 seeds -> report
demo: $(BINS)
	@MAYE_BIN=$(BUILD)/bin sh configs/demo/run.sh

clean:
	rm -rf $(BUILD)

# ----------------------------------------------------------------------------
# CUDA backend (CUDA=1)

.PHONY: gpu-bins gpu-check gpu-bundle test-cuda-emu
ifeq ($(CUDA),1)
ifeq ($(NVCC),)
  $(error CUDA=1 needs nvcc on the PATH)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
CUDA_ARCH ?= -gencode=arch=compute_90a,code=sm_90a
NVCCFLAGS ?=
NVCC_FLAGS := -std=c++17 -O3 -g -lineinfo $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
  -Xcudafe --display_error_number -Ilib -Itests -I$(BUILD)/gen $(NVCCFLAGS)
CUDA_LIBS := -Wl,--as-needed -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
CUDA_SRC := $(sort $(wildcard lib/kernels/cuda/*.cu lib/model/cuda/*.cu lib/backend/*.cu))
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
LIBMAYE_CUDA := $(BUILD)/libmaye_cuda.a
CUDA_TEST_SRC := $(sort $(wildcard tests/cuda/test_*.cu))
CUDA_TEST_BINS := $(patsubst %.cu,$(BUILD)/%,$(CUDA_TEST_SRC))
GPU_BENCH_SRC := $(sort $(wildcard bench/gpu_*.cu))
GPU_BENCH_BINS := $(patsubst %.cu,$(BUILD)/%,$(GPU_BENCH_SRC))

all: $(LIBMAYE_CUDA)
tests: $(CUDA_TEST_BINS)

# the stages and maye drive the CUDA backend (lib/backend/cuda.cu): -u pulls it out of the archive, which
# makes backend.c's weak reference to it non-NULL (model.device=cuda)
BACKEND_LIBS := -Wl,-u,maye_backend_cuda_ops $(LIBMAYE_CUDA)
BACKEND_SYSLIBS := $(CUDA_LIBS)
$(filter-out %/maye-batch,$(BINS)): $(LIBMAYE_CUDA)
# maye-batch runs no model
$(BUILD)/bin/maye-batch: BACKEND_LIBS :=
$(BUILD)/bin/maye-batch: BACKEND_SYSLIBS :=

$(BUILD)/obj/%.o: %.cu $(PROTO_H)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(LIBMAYE_CUDA): $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CUDA_TEST_BINS): $(BUILD)/tests/cuda/%: $(BUILD)/obj/tests/cuda/%.o $(TEST_SUPPORT_OBJ) $(LIBMAYE_CUDA) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(LIBMAYE_CUDA) $(LIBMAYE) $(LIBS) $(CUDA_LIBS)

$(GPU_BENCH_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBMAYE_CUDA) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(LIBMAYE_CUDA) $(LIBMAYE) $(LIBS) $(CUDA_LIBS)

gpu-bins: $(BINS) $(CUDA_TEST_BINS) $(GPU_BENCH_BINS)

# the test and benchmark binaries plus the shared libraries they need beyond glibc, libstdc++ and CUDA, for
# a GPU machine that lacks this machine's packages (bench/gpu.sh --bundle DIR runs them)
gpu-bundle: gpu-bins
	@BUILD=$(BUILD) sh bench/gpu_bundle.sh

gpu-check: gpu-bins
	@BUILD=$(BUILD) sh bench/gpu.sh --no-build
else ifeq ($(CUDA_EMU),1)
# CUDA_EMU=1: the same CUDA sources compiled by g++ for the CPU emulator of tests/cuda_emu (its runtime API,
# cuBLAS and <<<>>> launches through tests/cuda_emu/unchevron.pl): the GPU model, the stages' CUDA backend
# (model.device=cuda) and the CUDA tests run on the CPU, slowly, without a GPU or the CUDA toolkit. Use its
# own BUILD; `make CUDA_EMU=1 BUILD=build-emu test-cuda-emu` runs tests/cuda/test_*.cu that way (`make test`
# does it in $(BUILD)/emu).
CUDA_SRC := $(sort $(wildcard lib/kernels/cuda/*.cu lib/model/cuda/*.cu lib/backend/*.cu))
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC)) $(EMU_RT_OBJ)
LIBMAYE_CUDA := $(BUILD)/libmaye_cuda.a
CUDA_TEST_SRC := $(sort $(wildcard tests/cuda/test_*.cu))
CUDA_TEST_BINS := $(patsubst %.cu,$(BUILD)/%,$(CUDA_TEST_SRC))
GPU_BENCH_SRC := bench/gpu_kernels.cu bench/gpu_model.cu
GPU_BENCH_BINS := $(patsubst %.cu,$(BUILD)/%,$(GPU_BENCH_SRC))
EMU_CU_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC) $(CUDA_TEST_SRC) $(GPU_BENCH_SRC))

all: $(LIBMAYE_CUDA)
tests: $(CUDA_TEST_BINS)
BACKEND_LIBS := -Wl,-u,maye_backend_cuda_ops $(LIBMAYE_CUDA)
BACKEND_SYSLIBS := -lstdc++
$(filter-out %/maye-batch,$(BINS)): $(LIBMAYE_CUDA)
$(BUILD)/bin/maye-batch: BACKEND_LIBS :=
$(BUILD)/bin/maye-batch: BACKEND_SYSLIBS :=

$(BUILD)/emu/%.cc: %.cu tests/cuda_emu/unchevron.pl
	@mkdir -p $(dir $@)
	perl tests/cuda_emu/unchevron.pl $< < $< > $@.tmp && mv $@.tmp $@

# quoted includes resolve next to the .cu file
$(EMU_CU_OBJ): $(BUILD)/obj/%.o: $(BUILD)/emu/%.cc $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -iquote $(dir $*) -c $< -o $@

$(LIBMAYE_CUDA): $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CUDA_TEST_BINS): $(BUILD)/tests/cuda/%: $(BUILD)/obj/tests/cuda/%.o $(TEST_SUPPORT_OBJ) $(LIBMAYE_CUDA) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(LIBMAYE_CUDA) $(LIBMAYE) $(LIBS) -lstdc++

# the GPU benchmarks, for their --smoke runs (tests/cuda/test_gpu_bench_smoke.sh)
$(GPU_BENCH_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBMAYE_CUDA) $(LIBMAYE)
	@mkdir -p $(dir $@)
	$(CC) $(MAYE_LDFLAGS) -o $@ $< $(LIBMAYE_CUDA) $(LIBMAYE) $(LIBS) -lstdc++

test-cuda-emu: $(BINS) $(CUDA_TEST_BINS) $(GPU_BENCH_BINS)
	@BUILD=$(BUILD) sh tests/run.sh cuda/

gpu-bins gpu-check gpu-bundle:
	@echo "make: $@ needs the CUDA backend: make CUDA=1 $@"; exit 2
else
gpu-bins gpu-check gpu-bundle test-cuda-emu:
	@echo "make: $@ needs the CUDA backend: make CUDA=1 $@ (test-cuda-emu: make CUDA_EMU=1 BUILD=build-emu $@)"; exit 2
endif

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
