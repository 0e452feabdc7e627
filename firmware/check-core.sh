#!/usr/bin/env bash
# Cross-builds krill-core, unchanged, for the two board targets with Debian's
# rustc-web toolchain (the rustup toolchain here has only the host target):
#   thumbv7em-none-eabihf        nRF52840 (Cortex-M4F)
#   riscv32imc-unknown-none-elf  ESP32-C3
# and prints the core's .text size for each. Installs the packages if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

need=()
[ -x /usr/bin/rustc ] && /usr/bin/rustc --version | grep -q . || need+=(rustc-web)
[ -d /usr/lib/rustlib/src/rust/library/core ] || need+=(rust-web-src)
[ -x /usr/bin/cargo ] || need+=(cargo-web)
command -v rust-lld >/dev/null 2>&1 || [ -x /usr/lib/llvm-22/bin/lld ] || need+=(lld-22)
command -v llvm-size-22 >/dev/null 2>&1 || command -v size >/dev/null 2>&1 || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "check-core: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
# Keep the host's rustup settings and flags out of this build.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET RUSTFLAGS
target_dir="$here/target/core-check"
status=0
for t in thumbv7em-none-eabihf riscv32imc-unknown-none-elf; do
  echo "== krill-core for $t"
  if ! /usr/bin/cargo build -q --release -Zbuild-std=core \
      --manifest-path "$root/core/Cargo.toml" --target "$t" --target-dir "$target_dir"; then
    echo "check-core: build for $t FAILED"
    status=1
    continue
  fi
  rlib=$(ls -t "$target_dir/$t/release/deps"/libkrill_core-*.rlib | head -n1)
  # .text of the core's own object files (its dependencies are separate rlibs).
  tmp=$(mktemp -d)
  (cd "$tmp" && ar x "$rlib")
  text=$(size -A "$tmp"/*.o 2>/dev/null | awk '$1 ~ /^\.text/ {s += $2} END {print s + 0}')
  rm -rf "$tmp"
  echo "krill-core .text on $t: $text bytes (object code before linking; a board links in only what it calls)"
done
exit $status
