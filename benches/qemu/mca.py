#!/usr/bin/env python3
"""Cycle model of owlet's aarch64 NEON micro-kernels: llvm-mca on each inner loop.

    benches/qemu/mca.py [RLIB]

RLIB defaults to the newest aarch64 release build of owlet-runtime under
target/cross (scripts/cross build or test makes it). For each kernel the script
disassembles the compiled function, takes its hottest loop (the backward branch whose
body holds the most multiply instructions), and asks llvm-mca, for each scheduling
model, for:

- cycles per iteration: the loop body simulated for 200 iterations (dependencies,
  ports and latencies as the model has them);
- the multiply bound: the block reciprocal throughput of the body's multiply
  instructions alone (what the loop could not go below if everything else were free);
- the load bound: the same for its loads (a dot product of two streams loads two
  registers per multiply, and is bound by that rather than by its multiplies);
- efficiency: cycles over the higher of the two bounds (1.00x is at the bound);
- the block bound: llvm-mca's own reciprocal throughput of the whole body, which also
  counts its micro-ops against the core's dispatch width (where that, not a port,
  is the limit, efficiency cannot reach 1.00x).

What the model cannot see: caches and memory (every load hits L1), the hardware
prefetcher, branch prediction, and the code around the loop (packing, the epilogue,
quantizing x); LLVM's cortex-a72 model is its Cortex-A57 one, and neoverse-n1 stands
in for the Cortex-A76 and A78 cores (their public optimisation guides are close).
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

# (name in the table, a substring of the mangled symbol, what one iteration computes,
# the scheduling models of the cores that run it). LLVM's cortex-a72 is its A57 model;
# neoverse-n1 stands in for the A76 (Pi 5) and A78AE (Orin), which have no model of
# their own there that differs from it.
KERNELS = [
    ("int8 2x16, widening", "micro_neon_2x16", "2 rows x 16 channels x 8 k", ["cortex-a72"]),
    ("int8 1x16, widening", "micro_neon_1x16", "1 row x 16 channels x 8 k", ["cortex-a72"]),
    ("int8 4x16, sdot", "micro_sdot_4x16", "4 rows x 16 channels x 16 k", ["neoverse-n1"]),
    ("int8 1x16, sdot", "micro_sdot_1x16", "1 row x 16 channels x 16 k", ["neoverse-n1"]),
    ("f32 dot, 32 lanes", "aarch64_neon_dot_f32_32n", "32 products",
     ["cortex-a72", "neoverse-n1"]),
]
# Instructions that multiply (the loop's useful work).
MULTIPLIES = re.compile(r"^(s|u)(mull|mlal)2?$|^(s|u)dot$|^fml[as]$|^fmul$|^fmadd$|^mla$|^mul$")
LOADS = re.compile(r"^ld")
MCA = next((m for m in ["llvm-mca-22", "llvm-mca"] if subprocess.run(["which", m], capture_output=True).returncode == 0), None)


def newest_rlib():
    rlibs = glob.glob("target/cross/aarch64-unknown-linux-gnu/release/deps/libowlet_runtime-*.rlib")
    if not rlibs:
        sys.exit("mca.py: no aarch64 build of owlet-runtime (run scripts/cross build or test first)")
    return max(rlibs, key=os.path.getmtime)


def disassemble(rlib, tmp):
    subprocess.run(["ar", "x", os.path.abspath(rlib)], cwd=tmp, check=True)
    text = []
    for obj in sorted(glob.glob(os.path.join(tmp, "*.o"))):
        out = subprocess.run(
            ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", obj],
            capture_output=True, text=True, check=True)
        text.append(out.stdout)
    return "\n".join(text)


def function(disasm, symbol):
    """[(address, mnemonic, operands)] of the first function whose name holds symbol."""
    lines, inside = [], False
    for line in disasm.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            if inside:
                break
            inside = symbol in head.group(1)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if inside and m:
            operands = m.group(3).split("//")[0].strip()
            lines.append((int(m.group(1), 16), m.group(2), operands))
    if not lines:
        sys.exit(f"mca.py: no function {symbol} in the build")
    return lines


def hottest_loop(body):
    """The body of the backward branch with the most multiplies, branch excluded."""
    best = None
    for i, (addr, mnem, ops) in enumerate(body):
        if not (mnem == "b" or mnem.startswith("b.") or mnem in ("cbnz", "cbz", "tbnz", "tbz")):
            continue
        target = re.search(r"\b([0-9a-f]+) <", ops)
        if not target or int(target.group(1), 16) >= addr:
            continue
        start = int(target.group(1), 16)
        loop = [(m, o) for a, m, o in body[:i] if a >= start]
        n = sum(bool(MULTIPLIES.match(m)) for m, _ in loop)
        if best is None or n > best[0]:
            best = (n, loop)
    if best is None:
        sys.exit("mca.py: no loop found")
    return best[1]


def mca(instructions, cpu, iterations):
    src = "\n".join(f"{m} {o}" for m, o in instructions
                    if not (m == "b" or m.startswith("b.") or m in ("cbz", "cbnz")))
    out = subprocess.run(
        [MCA, "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={iterations}",
         "-mattr=+dotprod,+fullfp16", "--skip-unsupported-instructions=lack-sched"],
        input=src, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"mca.py: llvm-mca failed on {cpu}:\n{out.stderr}")
    total = int(re.search(r"Total Cycles:\s+(\d+)", out.stdout).group(1))
    rthroughput = float(re.search(r"Block RThroughput:\s+([\d.]+)", out.stdout).group(1))
    return total / iterations, rthroughput


def main():
    if MCA is None:
        sys.exit("mca.py: llvm-mca not found (Debian's llvm package)")
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    rlib = sys.argv[1] if len(sys.argv) > 1 else newest_rlib()
    with tempfile.TemporaryDirectory() as tmp:
        disasm = disassemble(rlib, tmp)
    version = subprocess.run([MCA, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"LLVM version ([\d.]+)", version).group(1)
    print(f"{os.path.basename(rlib)}, llvm-mca {version}\n")
    print("| kernel | one iteration | instructions | multiplies | model | cycles / iteration "
          "| multiply bound | load bound | efficiency | block bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, symbol, work, models in KERNELS:
        loop = hottest_loop(function(disasm, symbol))
        muls = [(m, o) for m, o in loop if MULTIPLIES.match(m)]
        loads = [(m, o) for m, o in loop if LOADS.match(m)]
        for cpu in models:
            cycles, block = mca(loop, cpu, 200)
            _, mul_bound = mca(muls, cpu, 200)
            _, load_bound = mca(loads, cpu, 200)
            print(f"| {name} | {work} | {len(loop)} | {len(muls)} | {cpu} | {cycles:.1f} "
                  f"| {mul_bound:.1f} | {load_bound:.1f} "
                  f"| {cycles / max(mul_bound, load_bound):.2f}x | {block:.1f} |")

if __name__ == "__main__":
    main()
