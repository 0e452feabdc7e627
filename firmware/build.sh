#!/usr/bin/env bash
# Builds the three firmware images with Debian's rustc-web toolchain into one
# target dir (qemu-m4, nrf52840 Dust, esp32c3 Nano), prints their sizes and
# fails when a board image is over budget, runs the QEMU Cortex-M4 image and
# checks that it computed exactly what the host computes: every conformance
# vector, and the actions of one node replayed from a recorded input log.
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
command -v llvm-readelf >/dev/null 2>&1 || need+=(llvm)
if [ ${#need[@]} -gt 0 ]; then
  echo "firmware: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

target_dir="${KRILL_FW_TARGET_DIR:-$here/target}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Wall time per step, to keep the whole script well inside CI's budget.
t0=$SECONDS
took() { echo "   ($((SECONDS - t0)) s)"; t0=$SECONDS; }

# The input log the image replays: node 17 of the quickstart scenario (it
# monitors the spiking node 24 from the next row), recorded by the simulator
# with the host's toolchain and workspace. `krill run --record` itself checks
# that the host replays the log to the run's own actions.
echo "== replay log: node 17 of scenarios/quickstart.ron, recorded by the simulator"
rec_dir="$target_dir/sim-recording"
rm -rf "$rec_dir"
if ! (cd "$here/.." && cargo run --release -q -p krill-sim -- run scenarios/quickstart.ron \
  --record 17 --out "$rec_dir") >"$tmp/record.txt" 2>&1; then
  cat "$tmp/record.txt"; echo "firmware: recording the replay log in the simulator FAILED"; exit 1
fi
grep -E '^(recorded node|host replay|the recording ends)' "$tmp/record.txt"
export KRILL_REPLAY_LOG="$rec_dir/node-17.krillrpl"
took

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
# Keep the host's rustup settings and flags out of these builds.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET RUSTFLAGS CARGO_TARGET_DIR
cargo=(/usr/bin/cargo)

echo "== qemu-m4 image (thumbv7em-none-eabihf)"
"${cargo[@]}" build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -Zbuild-std=core,alloc --target thumbv7em-none-eabihf -p qemu-m4
elf="$target_dir/thumbv7em-none-eabihf/release/qemu-m4"
took

# Both nRF52840 roles link to the same file name: build Nano first and keep a
# copy, then Dust (the default, what `cargo run` in nrf52840/ flashes).
echo "== nrf52840 images, Nano and Dust roles (thumbv7em-none-eabihf, profile board)"
"${cargo[@]}" build -q --profile board --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -Zbuild-std=core --target thumbv7em-none-eabihf -p krill-nrf52840 --no-default-features --features nano
nrf_elf="$target_dir/thumbv7em-none-eabihf/board/krill-nrf52840"
nrf_nano_elf="$target_dir/thumbv7em-none-eabihf/board/krill-nrf52840-nano"
cp "$nrf_elf" "$nrf_nano_elf"
"${cargo[@]}" build -q --profile board --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -Zbuild-std=core --target thumbv7em-none-eabihf -p krill-nrf52840
took

echo "== esp32c3 image, Nano role over ESP-NOW (riscv32imc-unknown-none-elf, release)"
"${cargo[@]}" build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -Zbuild-std=core,alloc --target riscv32imc-unknown-none-elf -p krill-esp32c3
esp_elf="$target_dir/riscv32imc-unknown-none-elf/release/krill-esp32c3"
took

# The host half. Built after qemu-m4, whose build scripts already compiled
# the same host crates with the same settings (build-override).
echo "== host runners (conformance digest, node replay) and host tests"
"${cargo[@]}" build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -p krill-conformance -p krill-replay --features krill-conformance/gen,krill-replay/gen \
  --bin host-digest --bin host-replay
host_bin="$target_dir/release/host-digest"
replay_bin="$target_dir/release/host-replay"
RUSTDOC=/usr/bin/rustdoc "${cargo[@]}" test -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
  -p krill-replay -p krill-board --features krill-replay/gen --lib >"$tmp/host-tests.txt" 2>&1 || {
  cat "$tmp/host-tests.txt"; echo "firmware: host tests of krill-replay / krill-board FAILED"; exit 1; }
grep '^test result' "$tmp/host-tests.txt" || true
took

# Berkeley format: text (incl. .rodata, vectors) data bss.
read -r text data bss _ < <(arm-none-eabi-size "$elf" | tail -n1)
ram_total=$((4 * 1024 * 1024))
echo "qemu-m4 size: flash $((text + data)) B (text $text + data $data), static RAM $((data + bss)) B (data $data + bss $bss, of which 2 MiB heap), stack headroom $((ram_total - data - bss)) B of 4 MiB"

# Section sizes from the ELF: flash = every allocated PROGBITS section (code,
# constants, and the initial values of .data copied to RAM at boot); static
# RAM = allocated sections placed in [lo, hi), except the linker's .stack.
# Prints "flash ram stack" (stack = the .stack section's size, 0 if none).
elf_sizes() {
  local elf=$1 lo=$2 hi=$3 flash=0 ram=0 stack=0
  while read -r name type addr _off size _es flg _rest; do
    case "$flg" in *A*) ;; *) continue ;; esac
    local a=$((16#$addr)) n=$((16#$size))
    if [ "$name" = .stack ]; then stack=$n; continue; fi
    [ "$type" = PROGBITS ] && flash=$((flash + n))
    if [ $a -ge $((lo)) ] && [ $a -lt $((hi)) ]; then ram=$((ram + n)); fi
  done < <(llvm-readelf -S -W "$elf" | sed -n 's/^ *\[ *[0-9]*\] //p')
  echo "$flash $ram $stack"
}
budget_status=0
kib() { awk "BEGIN {printf \"%.1f KiB\", $1 / 1024}"; }

# nRF52840: 1 MiB flash, 256 KiB RAM at 0x20000000; Dust budget 112 KiB
# (ES-14.4's application partition), 16 KiB of RAM left for the stack.
read -r nrf_flash nrf_ram _ < <(elf_sizes "$nrf_elf" 0x20000000 0x20040000)
nrf_chip_ram=$((256 * 1024))
echo "nrf52840 (Dust) size: flash $nrf_flash B ($(kib $nrf_flash)) of 112 KiB budget, static RAM $nrf_ram B ($(kib $nrf_ram)), stack headroom $((nrf_chip_ram - nrf_ram)) B of 256 KiB"
if [ "$nrf_flash" -gt $((112 * 1024)) ]; then
  echo "firmware: nrf52840 Dust image OVER its 112 KiB flash budget"; budget_status=1
fi
if [ $((nrf_chip_ram - nrf_ram)) -lt $((16 * 1024)) ]; then
  echo "firmware: nrf52840 leaves less than 16 KiB of RAM for the stack"; budget_status=1
fi
# The Dust node calls Node::handle_timers; its keyless DustIdentity must keep
# the enrollment path (X25519, HKDF, ChaCha20-Poly1305, Ed25519) out of the image.
enroll_syms=$(arm-none-eabi-nm -C "$nrf_elf" | grep -ciE 'curve25519|x25519|hkdf|chacha|ed25519|enroll' || true)
echo "nrf52840 (Dust): $enroll_syms enrollment or signature symbols linked (must be 0)"
if [ "$enroll_syms" -ne 0 ]; then
  echo "firmware: the nrf52840 Dust image links the enrollment path"; budget_status=1
fi
# The Nano image may use the whole area below the KRILL partitions
# (0x0-0xD0000, memory.x; the linker enforces it too).
read -r nano_flash nano_ram _ < <(elf_sizes "$nrf_nano_elf" 0x20000000 0x20040000)
echo "nrf52840 (Nano) size: flash $nano_flash B ($(kib $nano_flash)) of 832 KiB application area, static RAM $nano_ram B ($(kib $nano_ram)), stack headroom $((nrf_chip_ram - nano_ram)) B of 256 KiB"
if [ "$nano_flash" -gt $((16#D0000)) ] || [ $((nrf_chip_ram - nano_ram)) -lt $((16 * 1024)) ]; then
  echo "firmware: nrf52840 Nano image over its flash area or leaves less than 16 KiB of RAM"; budget_status=1
fi

# ESP32-C3: 400 KiB SRAM; the app sees 313 KiB of it as DRAM at 0x3FC80000
# (the rest is the 16 KiB cache and what the ROM bootloader keeps); IRAM
# code is mirrored there by .rwdata_dummy, so counting DRAM counts it once.
# The linker gives the stack whatever DRAM is left (.stack). App budget
# 1.5 MiB (ES-14.1's app partition).
read -r esp_flash esp_ram esp_stack < <(elf_sizes "$esp_elf" 0x3FC80000 0x3FD00000)
esp_chip_ram=$((400 * 1024))
echo "esp32c3 (Nano) size: app $esp_flash B ($(kib $esp_flash)) of 1.5 MiB budget, static RAM $esp_ram B ($(kib $esp_ram)) of 400 KiB, stack headroom $esp_stack B (the linker's .stack: DRAM left after static data)"
if [ "$esp_flash" -gt $((1536 * 1024)) ]; then
  echo "firmware: esp32c3 image OVER its 1.5 MiB app budget"; budget_status=1
fi
if [ "$esp_ram" -gt $((esp_chip_ram - 16 * 1024)) ] || [ "$esp_stack" -lt $((16 * 1024)) ]; then
  echo "firmware: esp32c3 leaves less than 16 KiB of RAM for the stack"; budget_status=1
fi

echo "== qemu-m4 on qemu-system-arm mps2-an386"
start=$(date +%s.%N)
set +e
timeout 300 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native -kernel "$elf" >"$tmp/target.txt" 2>&1
qemu_rc=$?
set -e
end=$(date +%s.%N)
grep -v '^PASS \|^replay' "$tmp/target.txt" || true
echo "qemu run: exit $qemu_rc in $(awk "BEGIN {printf \"%.2f\", $end - $start}") s"

"$host_bin" >"$tmp/host.txt" || { grep -v '^PASS ' "$tmp/host.txt"; echo "firmware: host run FAILED"; exit 1; }
target_digest=$(sed -n 's/^digest: //p' "$tmp/target.txt")
host_digest=$(sed -n 's/^digest: //p' "$tmp/host.txt")
target_blob=$(sed -n 's/.*bytes of vectors, blake2s //p' "$tmp/target.txt")
host_blob=$(sed -n 's/^vectors: .* blake2s //p' "$tmp/host.txt")
echo "host:   $(tail -n1 "$tmp/host.txt"), digest $host_digest"
echo "target: $(grep -E '^[0-9]+ passed' "$tmp/target.txt" | tail -n1), digest $target_digest"

status=$budget_status
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
  diff <(grep -v 'bytes of vectors\|^replay' "$tmp/target.txt") <(grep -v '^vectors: ' "$tmp/host.txt") | head -20 || true
  status=1
fi
[ $status -eq 0 ] && echo "firmware: Cortex-M4 conformance results are bit-identical to the host's"

echo "== node replay (node 17's input log from the simulator run)"
"$replay_bin" "$KRILL_REPLAY_LOG" >"$tmp/host-replay.txt" || true
grep '^replay' "$tmp/target.txt" >"$tmp/target-replay.txt" || true
grep -v '^replay @' "$tmp/target-replay.txt" || true
log_t=$(sed -n 's/^replay log: //p' "$tmp/target-replay.txt")
log_h=$(sed -n 's/^replay log: //p' "$tmp/host-replay.txt")
dig_t=$(sed -n 's/^replay digest: //p' "$tmp/target-replay.txt")
dig_h=$(sed -n 's/^replay digest: //p' "$tmp/host-replay.txt")
echo "host:   $(tail -n1 "$tmp/host-replay.txt"), digest $dig_h"
echo "target: $(tail -n1 "$tmp/target-replay.txt"), digest $dig_t"
if [ -z "$log_t" ] || [ "$log_t" != "$log_h" ]; then
  echo "firmware: the image's replay log differs from the host's ($log_t vs $log_h)"
  status=1
fi
if ! grep -qx 'replay: PASS' "$tmp/host-replay.txt" || ! grep -qx 'replay: PASS' "$tmp/target-replay.txt"; then
  echo "firmware: a replay did not reproduce the recorded run"
  status=1
fi
if [ -z "$dig_t" ] || [ "$dig_t" != "$dig_h" ]; then
  echo "firmware: REPLAY DIGEST MISMATCH between Cortex-M4 and host; first differing lines:"
  diff "$tmp/target-replay.txt" "$tmp/host-replay.txt" | head -20 || true
  status=1
fi
[ $status -eq 0 ] && echo "firmware: the replayed node's actions on Cortex-M4 are bit-identical to the host's"
echo "firmware: build.sh took $SECONDS s"
exit $status
