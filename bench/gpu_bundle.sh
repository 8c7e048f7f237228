#!/bin/sh
# Packs the CUDA test and benchmark binaries of $BUILD (make CUDA=1 gpu-bins), with the stages and maye of that
# build (CUDA backend linked in), into $BUILD/gpu-bundle for a GPU machine that lacks this machine's Debian
# packages: bin/ holds the binaries (debug info stripped), lib/ the shared libraries they load beyond glibc,
# libstdc++/libgcc and CUDA (OpenBLAS, libgomp, libgfortran, cairo, ...), configs/ the demo model config and
# tokenizer and the example data (tests/cuda/test_stages_cuda runs the stages on them);
# $BUILD/gpu-bundle.tar.gz is the same, compressed, to carry to that machine. fixtures/golden/ holds the golden
# model folders of $MAYE_FIXTURES (default ../shared/fixtures; those with config.json + model.safetensors, about
# 15 MB), which the model tests need and which do not travel with the working tree.
# Run it there with: sh bench/gpu.sh --bundle $BUILD/gpu-bundle.tar.gz, or sh bench/gpu_model.sh --bundle ...
# (called by `make CUDA=1 gpu-bundle`)
set -eu
BUILD=${BUILD:-build}
OUT_DIR="$BUILD/gpu-bundle"
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR/bin" "$OUT_DIR/lib"
bins=$(ls "$BUILD"/tests/cuda/test_* "$BUILD"/bench/gpu_* "$BUILD"/bin/maye* 2>/dev/null || true)
[ -n "$bins" ] || { echo "gpu_bundle: no CUDA binaries in $BUILD (run make CUDA=1 gpu-bins first)" >&2; exit 1; }
for b in $bins; do
  cp "$b" "$OUT_DIR/bin/"
  strip --strip-debug "$OUT_DIR/bin/$(basename "$b")"
  # libraries the GPU machine is expected to have are left out: glibc, the C++ runtime, CUDA, the driver
  ldd "$b" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnvidia*) ;;
      *) cp -L -n "$lib" "$OUT_DIR/lib/" ;;
    esac
  done
done
mkdir -p "$OUT_DIR/configs/demo" "$OUT_DIR/configs/example"
cp configs/demo/model.json configs/demo/tokenizer.json "$OUT_DIR/configs/demo/"
cp -R configs/example/. "$OUT_DIR/configs/example/"
fixtures=${MAYE_FIXTURES:-../shared/fixtures}
for d in "$fixtures"/golden/*/; do
  [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ] || continue
  mkdir -p "$OUT_DIR/fixtures/golden/$(basename "$d")"
  cp "$d"/*.json "$d"/*.safetensors "$OUT_DIR/fixtures/golden/$(basename "$d")/"
done
[ -d "$OUT_DIR/fixtures" ] || echo "gpu_bundle: no golden model fixtures under $fixtures (set MAYE_FIXTURES): the model tests will skip them" >&2
tar czf "$OUT_DIR.tar.gz" -C "$BUILD" gpu-bundle
echo "gpu_bundle: $OUT_DIR ($(du -sh "$OUT_DIR" | cut -f1)) and $OUT_DIR.tar.gz ($(du -sh "$OUT_DIR.tar.gz" | cut -f1))"
