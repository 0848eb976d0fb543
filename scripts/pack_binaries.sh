#!/usr/bin/env bash
# Packs built binaries with the shared libraries they load that another Linux machine may lack (libyaml, cJSON,
# HDF5, OpenBLAS and what they pull in): everything ldd resolves except the C/C++ runtime, the CUDA libraries
# (the target's toolkit and driver provide them) and the system libraries every current distribution ships
# (OpenSSL 3, Kerberos, zlib, zstd, libgomp), which keeps the folder under the GPU host's 64 MiB carry limit.
# The folder then runs there as
#   LD_LIBRARY_PATH=FOLDER/lib FOLDER/kiln ...
# e.g. to build here and run on a GPU host without building there:
#   scripts/pack_binaries.sh build-dev build/kiln build/tests/kiln_gpu_tests
#   scripts/pack_binaries.sh FOLDER BINARY...
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/pack_binaries.sh FOLDER BINARY..." >&2; exit 2; }
dest=$1
shift
mkdir -p "$dest/lib"
runtime='linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libstdc\+\+|libgcc_s|libgomp'
cuda='libcuda|libcudart|libcublas|libcudnn|libnccl|libcusolver|libcusparse|libcufft|libcurand|libnvrtc|libnvJitLink'
cuda+='|libcupti|libnvidia'
system='libssl\.|libcrypto\.|libz\.|libzstd\.|libgssapi_krb5|libkrb5|libk5crypto|libcom_err|libkeyutils'
skip="^($runtime|$cuda|$system)"
for bin in "$@"; do
  [ -x "$bin" ] || { echo "pack_binaries.sh: $bin is not an executable" >&2; exit 2; }
  cp "$bin" "$dest/"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] || cp -L "$path" "$dest/lib/$name"
  done
done
n_bin=$(ls "$dest" | grep -vc '^lib$') n_lib=$(ls "$dest/lib" | wc -l)
echo "$dest: $n_bin binaries, $n_lib libraries, $(du -sh "$dest" | cut -f1)"
