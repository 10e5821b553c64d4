# Sourced by benches/qemu/count.sh, graphs.sh and peer.sh: the counting plugin, and
# running an aarch64 owlet as a given board would have it run.

QEMU_PLUGIN=target/qemu/libinsn_count.so

# Build the instruction-counting TCG plugin (Debian's qemu-user ships none).
build_qemu_plugin() {
  mkdir -p target/qemu
  gcc -O2 -shared -fPIC -o "$QEMU_PLUGIN" benches/qemu/insn_count.c
}

# as_board CPU COMMAND...: COMMAND (an aarch64 owlet) under qemu-aarch64 -cpu CPU with
# the counting plugin, told what a board's /proc/cpuinfo would tell tract (under
# qemu-user it reads the host's): its core kind, and on the A76 its f16 arithmetic
# (asimdhp). The plugin's report goes to stderr, as qemu's -d output does.
as_board() {
  local cpu=$1 kind isa
  shift
  if [ "$cpu" = cortex-a72 ]; then kind=CortexA72 isa=; else kind=Generic isa=+fp16; fi
  TRACT_CPU_AARCH64_KIND=$kind TRACT_CPU_ISA=$isa \
    qemu-aarch64 -cpu "$cpu" -plugin "$QEMU_PLUGIN" -d plugin "$@"
}
