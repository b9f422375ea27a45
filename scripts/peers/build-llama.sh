#!/usr/bin/env bash
# Builds llama.cpp's CPU backend (llama-bench, libllama) from llama-cpp-python's sdist into
# out/peers/llama.cpp-build, and our greedy-id tool (scripts/peers/greedy.cpp) against it; with the
# argument `vulkan`, also its Vulkan backend's llama-bench into out/peers/llama.cpp-vulkan-build
# (Debian's glslc, glslang-tools, spirv-headers and libvulkan-dev; bookworm's Vulkan headers,
# 1.3.239, lack VK_EXT_layer_settings, which ggml-vulkan.cpp uses only to ask the validation layer
# for best-practice checks: that request is taken out of the extracted source).
# Nothing of llama.cpp is committed; this fetches it from PyPI. Skips what is already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
VER=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
PEERS=out/peers
SRC=$PEERS/llama_cpp_python-$VER/vendor/llama.cpp
BUILD=$PEERS/llama.cpp-build
LOCK=/tmp/sphinx-build.lock   # the machine is small: every compile takes this lock
mkdir -p "$PEERS"

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }
  if [ ! -f "$PEERS/llama_cpp_python-$VER.tar.gz" ]; then
    # the sdist's address from PyPI's simple index (pip download would build its build tools)
    url=$(curl -fsSL https://pypi.org/simple/llama-cpp-python/ | grep -o "https://[^\"#]*llama_cpp_python-$VER.tar.gz" | head -1)
    [ -n "$url" ] || { echo "no llama-cpp-python $VER sdist on PyPI" >&2; exit 1; }
    curl -fsSL -o "$PEERS/llama_cpp_python-$VER.tar.gz" "$url"
  fi
  tar xzf "$PEERS/llama_cpp_python-$VER.tar.gz" -C "$PEERS"
fi

if [ ! -x "$BUILD/bin/llama-bench" ]; then
  t0=$(date +%s)
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  flock "$LOCK" cmake --build "$BUILD" --config Release -j "$(nproc)" --target llama llama-bench
  echo "llama.cpp build: $(( $(date +%s) - t0 )) s"
fi

if [ ! -x "$BUILD/bin/greedy" ] || [ scripts/peers/greedy.cpp -nt "$BUILD/bin/greedy" ]; then
  libs=$(find "$BUILD" -name 'libllama.a' -o -name 'libggml*.a' | sort -r | tr '\n' ' ')
  flock "$LOCK" g++ -O2 -std=c++17 -I "$SRC/include" -I "$SRC/ggml/include" scripts/peers/greedy.cpp \
    -Wl,--start-group $libs -Wl,--end-group -fopenmp -lpthread -o "$BUILD/bin/greedy"
fi

if [ "${1:-}" = vulkan ] && [ ! -x "$PEERS/llama.cpp-vulkan-build/bin/llama-bench" ]; then
  VKBUILD=$PEERS/llama.cpp-vulkan-build
  for pkg in glslc glslang-tools spirv-headers libvulkan-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq glslc glslang-tools spirv-headers libvulkan-dev; break; }
  done
  VK=$SRC/ggml/src/ggml-vulkan/ggml-vulkan.cpp
  # instance creation without the layer-settings chain (the only VK_EXT_layer_settings use)
  perl -0pi -e 's/VkBool32 enable_best_practice = layer_settings;.*?vk::InstanceCreateInfo instance_create_info\(vk::InstanceCreateFlags\{\}, &app_info, layers, extensions, &layer_setting_info\);/vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions);/s' "$VK"
  t0=$(date +%s)
  cmake -S "$SRC" -B "$VKBUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_VULKAN=ON \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  flock "$LOCK" cmake --build "$VKBUILD" --config Release -j "$(nproc)" --target llama-bench
  echo "llama.cpp Vulkan build: $(( $(date +%s) - t0 )) s"
fi
