#!/bin/sh
# Builds every fuzz target fuzz/fuzz_<name>.c with libFuzzer + AddressSanitizer + UBSan into
# $BUILD/fuzz/<name>. Run one with: fuzz/run.sh <name> [seconds].
set -e
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" "$BUILD/gen/schemas/maye.pb-c.c" >/dev/null
out="$BUILD/fuzz"; mkdir -p "$out"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Ilib -Itests -I$BUILD/gen
 $(pkg-config --cflags libpng libcjson) -I/usr/include/x86_64-linux-gnu/openblas-openmp -fopenmp=libgomp -D_GNU_SOURCE"
LIBS="-lprotobuf-c -lzstd -lyaml -lcjson -lpcre2-8 -lutf8proc -lpng16 -ljpeg
 -L/usr/lib/x86_64-linux-gnu/openblas-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lgomp -lm -lpthread"
# the library once, instrumented (without -fsanitize=fuzzer's main)
objdir="$out/obj"; mkdir -p "$objdir"
LIBCFLAGS=$(echo "$CFLAGS" | sed 's/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,/')
objs=""
for src in $(find lib -name '*.c' | sort) "$BUILD/gen/schemas/maye.pb-c.c"; do
  o="$objdir/$(echo "$src" | tr '/' '_').o"
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ]; then clang $LIBCFLAGS -std=gnu11 -c "$src" -o "$o"; fi
  objs="$objs $o"
done
for t in fuzz/fuzz_*.c; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .c | sed 's/^fuzz_//')
  echo "fuzz: building $out/$name"
  clang $CFLAGS -std=gnu11 "$t" $objs $LIBS -o "$out/$name"
done
