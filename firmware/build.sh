#!/usr/bin/env bash
# Builds the firmware images with Debian's rustc-web toolchain, prints their
# sizes, runs the QEMU Cortex-M4 conformance image and checks that it
# computed exactly what the host computes from the same vector cases.
# Installs the packages it needs when missing. Exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Cargo finds `.cargo/config.toml` (linker, runner) from the working
# directory, not from --manifest-path.
cd "$here"

need=()
[ -x /usr/bin/rustc ] || need+=(rustc-web)
[ -d /usr/lib/rustlib/src/rust/library/core ] || need+=(rust-web-src)
[ -x /usr/bin/cargo ] || need+=(cargo-web)
[ -x /usr/lib/llvm-22/bin/ld.lld ] || need+=(lld-22)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
command -v arm-none-eabi-size >/dev/null 2>&1 || need+=(binutils-arm-none-eabi)
if [ ${#need[@]} -gt 0 ]; then
  echo "firmware: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
# Keep the host's rustup settings and flags out of these builds.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET RUSTFLAGS CARGO_TARGET_DIR
target_dir="$here/target"
cargo=(/usr/bin/cargo)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== qemu-m4 image (thumbv7em-none-eabihf)"
"${cargo[@]}" build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -Zbuild-std=core,alloc --target thumbv7em-none-eabihf -p qemu-m4
elf="$target_dir/thumbv7em-none-eabihf/release/qemu-m4"

echo "== host digest runner"
"${cargo[@]}" build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -p krill-conformance --features gen --bin host-digest
host_bin="$target_dir/release/host-digest"

# Berkeley format: text (incl. .rodata, vectors) data bss.
read -r text data bss _ < <(arm-none-eabi-size "$elf" | tail -n1)
ram_total=$((4 * 1024 * 1024))
echo "qemu-m4 size: flash $((text + data)) B (text $text + data $data), static RAM $((data + bss)) B (data $data + bss $bss, of which 2 MiB heap), stack headroom $((ram_total - data - bss)) B of 4 MiB"

echo "== qemu-m4 on qemu-system-arm mps2-an386"
start=$(date +%s.%N)
set +e
timeout 300 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native -kernel "$elf" >"$tmp/target.txt" 2>&1
qemu_rc=$?
set -e
end=$(date +%s.%N)
grep -v '^PASS ' "$tmp/target.txt" || true
echo "qemu run: exit $qemu_rc in $(awk "BEGIN {printf \"%.2f\", $end - $start}") s"

"$host_bin" >"$tmp/host.txt" || { grep -v '^PASS ' "$tmp/host.txt"; echo "firmware: host run FAILED"; exit 1; }
target_digest=$(sed -n 's/^digest: //p' "$tmp/target.txt")
host_digest=$(sed -n 's/^digest: //p' "$tmp/host.txt")
target_blob=$(sed -n 's/.*bytes of vectors, blake2s //p' "$tmp/target.txt")
host_blob=$(sed -n 's/^vectors: .* blake2s //p' "$tmp/host.txt")
echo "host:   $(tail -n1 "$tmp/host.txt"), digest $host_digest"
echo "target: $(tail -n1 "$tmp/target.txt"), digest $target_digest"

status=0
if [ "$qemu_rc" -ne 0 ]; then
  echo "firmware: qemu-m4 FAILED (exit $qemu_rc; 124 = timeout)"
  status=1
fi
if [ -z "$target_blob" ] || [ "$target_blob" != "$host_blob" ]; then
  echo "firmware: the image's vector cases differ from the host's ($target_blob vs $host_blob)"
  status=1
fi
if [ -z "$target_digest" ] || [ "$target_digest" != "$host_digest" ]; then
  echo "firmware: DIGEST MISMATCH between Cortex-M4 and host; first differing lines:"
  diff <(grep -v 'bytes of vectors' "$tmp/target.txt") <(grep -v '^vectors: ' "$tmp/host.txt") | head -20 || true
  status=1
fi
[ $status -eq 0 ] && echo "firmware: Cortex-M4 results are bit-identical to the host's"
exit $status
