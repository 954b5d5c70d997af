#!/usr/bin/env bash
# Build et_bench_runner for Android arm64-v8a: the bundle device_bench pushes to a phone.
#
# NOT RUN HERE: the machine this project was developed on has no Android NDK and no network
# access to fetch an ExecuTorch source tree, so this script is written from ExecuTorch's
# documented CMake options and has never been executed. Expect to adjust it on first use.
#
# Needs:
#   ANDROID_NDK      path to an Android NDK (r26 or newer), e.g. ~/Android/Sdk/ndk/27.2.12479018
#   EXECUTORCH_SRC   an ExecuTorch source checkout at the SAME version as the Python wheel that
#                    exported the .pte files (here 1.5.1: git checkout v1.5.1 && git submodule
#                    update --init --recursive); a mismatched runtime may refuse the program
#   cmake >= 3.28, ninja (optional)
#
# Produces build/runner/arm64-v8a/et_bench_runner (statically linked against ExecuTorch,
# XNNPACK, the optimized and quantized kernels and ETDump). `compress bench --serial ...`
# picks it for any device whose ro.product.cpu.abi is arm64-v8a.
#
# Usage: ANDROID_NDK=... EXECUTORCH_SRC=... device_bench/runner/build_android.sh [build-dir]
set -euo pipefail

: "${ANDROID_NDK:?set ANDROID_NDK to the Android NDK directory}"
: "${EXECUTORCH_SRC:?set EXECUTORCH_SRC to an ExecuTorch source checkout (same version as the wheel)}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/../.." && pwd)"
ABI=arm64-v8a
PLATFORM=android-26
WORK="${1:-${REPO}/build/android}"
ET_BUILD="${WORK}/executorch-${ABI}"
ET_INSTALL="${WORK}/executorch-${ABI}-install"
RUNNER_BUILD="${WORK}/runner-${ABI}"
OUT="${DEVICE_BENCH_RUNNER_DIR:-${REPO}/build/runner}/${ABI}"
TOOLCHAIN="${ANDROID_NDK}/build/cmake/android.toolchain.cmake"
CMAKE="${CMAKE:-cmake}"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

[ -f "${TOOLCHAIN}" ] || { echo "no NDK toolchain file at ${TOOLCHAIN}" >&2; exit 1; }
[ -f "${EXECUTORCH_SRC}/CMakeLists.txt" ] || { echo "${EXECUTORCH_SRC} is not an ExecuTorch checkout" >&2; exit 1; }

echo "== 1/2 ExecuTorch runtime for ${ABI} -> ${ET_INSTALL}"
"${CMAKE}" -S "${EXECUTORCH_SRC}" -B "${ET_BUILD}" "${GEN[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="${TOOLCHAIN}" \
  -DANDROID_ABI="${ABI}" \
  -DANDROID_PLATFORM="${PLATFORM}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="${ET_INSTALL}" \
  -DEXECUTORCH_ENABLE_LOGGING=ON \
  -DEXECUTORCH_BUILD_XNNPACK=ON \
  -DEXECUTORCH_BUILD_KERNELS_OPTIMIZED=ON \
  -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON \
  -DEXECUTORCH_BUILD_EXTENSION_MODULE=ON \
  -DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON \
  -DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON \
  -DEXECUTORCH_BUILD_EXTENSION_TENSOR=ON \
  -DEXECUTORCH_BUILD_DEVTOOLS=ON \
  -DEXECUTORCH_ENABLE_EVENT_TRACER=ON
"${CMAKE}" --build "${ET_BUILD}" -j"$(nproc)" --target install

echo "== 2/2 et_bench_runner for ${ABI} -> ${OUT}"
"${CMAKE}" -S "${HERE}" -B "${RUNNER_BUILD}" "${GEN[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="${TOOLCHAIN}" \
  -DANDROID_ABI="${ABI}" \
  -DANDROID_PLATFORM="${PLATFORM}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="${ET_INSTALL}" \
  -DCMAKE_FIND_ROOT_PATH="${ET_INSTALL}"
"${CMAKE}" --build "${RUNNER_BUILD}" -j"$(nproc)"
"${CMAKE}" --install "${RUNNER_BUILD}" --prefix "${OUT}"
# A source build links statically: the bundle is the binary alone. If your ExecuTorch build
# made shared libraries instead, copy them next to the binary (RUNPATH is $ORIGIN).
file "${OUT}/et_bench_runner" 2>/dev/null || true
echo "done: ${OUT}/et_bench_runner  (next: compress devices; compress bench MODEL.pte --serial SERIAL)"
