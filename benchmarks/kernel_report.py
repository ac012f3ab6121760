"""What the GPU compilers made of the kernels, read without a GPU: registers,
spills, vector loads, integer-division calls, instruction counts, and each Triton
kernel's main loop (instructions per 16 bytes it loads, how close together its
loads are issued).

    python benchmarks/kernel_report.py                       # CUDA (kernels/afnm_cuda.cu) and Triton, sm_90
    python benchmarks/kernel_report.py --cuda-kernel "affine_kernel<float, float, 4>" --listing

CUDA: compiles a .cu file with nvcc as setup.py does (CUDA_HOME, default
/usr/local/cuda) and reads the object with cuobjdump (the copy Triton ships).
Triton: compiles the plane kernels for the target with the specialisation a
launch at 32x64x128x128 gets (16-byte aligned pointers, sizes divisible by
16) and reads the PTX and ptxas's report. Static facts, not speed: a kernel
with a per-element division call or a scalar load where a 16-byte one fits
is slower than it needs to be on any GPU, which the lent-GPU benchmark
(run_gpu.py) then measures.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tool(name):
    """A CUDA binary utility from Triton's bundled toolkit (cuobjdump, ptxas)."""
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found at {path}")
    return str(path)


def compile_cuda(source, arch, out):
    """nvcc -c source for sm_<arch>, with setup.py's flags."""
    from torch.utils import cpp_extension

    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.path.exists(nvcc):
        raise FileNotFoundError(f"nvcc not found at {nvcc}; set CUDA_HOME")
    includes = [ROOT / "csrc" / "include", *cpp_extension.include_paths(), os.path.join(cuda_home, "include")]
    cmd = [nvcc, "-c", str(source), "-o", str(out), "-DANRL_EXT_WITH_CUDA", *[f"-I{p}" for p in includes],
           *cpp_extension.COMMON_NVCC_FLAGS, "-O3", "-std=c++20", "--use_fast_math", "-Xcompiler", "-fPIC",
           f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    subprocess.run(cmd, check=True)


def cuda_kernels(obj):
    """{demangled name: dict(regs, local, shared, instructions, ldg128, ldg, calls, sass)}."""
    usage = subprocess.run([tool("cuobjdump"), "-res-usage", str(obj)], capture_output=True, text=True,
                           check=True).stdout
    sass = subprocess.run([tool("cuobjdump"), "-sass", str(obj)], capture_output=True, text=True, check=True).stdout
    found = {}
    for mangled, regs, stack, shared, local in re.findall(
            r"Function (\S+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage):
        found[mangled] = dict(regs=int(regs), stack=int(stack), shared=int(shared), local=int(local))
    parts = re.split(r"\n\s*Function : (\S+)\n", sass)
    for mangled, body in zip(parts[1::2], parts[2::2]):
        lines = [ln.split(";")[0].strip() for ln in body.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", ln)]
        ops = Counter(re.sub(r"^/\*[0-9a-f]{4}\*/\s*(@!?U?P\w+\s+)?", "", ln).split(" ")[0] for ln in lines)
        found.setdefault(mangled, {}).update(
            instructions=len(lines), sass=lines,
            ldg128=sum(n for op, n in ops.items() if op.startswith("LDG.E.128")),
            ldg=sum(n for op, n in ops.items() if op.startswith("LDG")),
            stg128=sum(n for op, n in ops.items() if op.startswith("STG.E.128")),
            calls=sum(n for op, n in ops.items() if op.startswith("CALL")))
    names = subprocess.run(["c++filt"], input="\n".join(found), capture_output=True, text=True).stdout.splitlines()
    return {short_name(d): v for d, v in zip(names, found.values())}


LOAD_BYTES = {"128": 16, "64": 8, "U16": 2, "S16": 2, "U8": 1, "S8": 1}


def main_loop(sass):
    """The innermost loop that loads from global memory, read from a SASS listing (a backward
    branch closes a loop): dict(instructions, body (their text), bytes loaded a thread an iteration, loads, load_span:
    the share of the loop from its first load to its last; loads issued together keep more bytes
    in flight than loads spread between the arithmetic that uses them). None without such a loop."""
    at = [(int(m.group(1), 16), m.group(2)) for m in (re.match(r"\s*/\*([0-9a-f]{4})\*/\s*(.*)", line) for line in sass)
          if m]
    best = None
    for addr, text in at:
        branch = re.search(r"\bBRA (0x[0-9a-f]+)", text)
        if not branch or int(branch.group(1), 16) >= addr:
            continue
        body = [t for a, t in at if int(branch.group(1), 16) <= a <= addr]
        loads = [i for i, t in enumerate(body) if re.search(r"\bLDG\b", t)]
        if loads and (best is None or len(body) < best["instructions"]):
            width = [re.search(r"LDG\.E(?:\.(\w+))?", body[i]) for i in loads]
            best = dict(instructions=len(body), loads=len(loads), body=body,
                        bytes=sum(LOAD_BYTES.get(w.group(1), 4) if w else 4 for w in width),
                        load_span=(loads[-1] - loads[0] + 1) / len(body))
    return best


def loop_columns(loop):
    """A main loop's instructions per 16 bytes loaded and load span, as the tables print them."""
    return f"{16 * loop['instructions'] / loop['bytes']:11.1f} {loop['load_span']:9.0%}" if loop else " " * 21


def short_name(demangled):
    """affine_kernel<float, float, 4> from the full demangled signature."""
    m = re.search(r"(\w+_kernel<[^()]*?>)\(", demangled) or re.search(r"(\w+_kernel)\(", demangled)
    return m.group(1).replace("c10::", "") if m else demangled


def triton_kernels(arch):
    """The plane kernels, NCHW and channels_last, compiled as a launch at 32x64x128x128
    float32 / bfloat16 would (the launcher's tile sizes)."""
    import triton
    from triton.backends.compiler import GPUTarget

    sys.path.insert(0, str(ROOT / "python_tests"))
    import test_triton_gpu_compile as spec

    from anrl_ext.ops import triton_backend as tb
    from anrl_ext.ops.triton_blend import plane_block
    from anrl_ext.ops.triton_blend_apply import _block_n, fold_rows

    kernels = spec.kernels()
    report = {}
    rows, cols = tb.map_tiles(64)
    block = plane_block(128 * 128)
    # NCHW: a 128 x 128 plane a program (the folds: ROWS planes of a channel)
    tiles = {"_kernel": dict(BLOCK=block, PART=tb.plane_parts(128 * 128, block), ROWS=fold_rows(32, block),
                             BLOCK_N=_block_n(32)),
             "_nhwc_kernel": dict(BLOCK_HW=tb.BLOCK_HW, BLOCK_C=tb.BLOCK_CL, PART=tb.PART_CL),
             "_affine_nhwc_kernel": dict(BLOCK_HW=rows, BLOCK_C=cols)}  # also _affine2_nhwc_kernel
    for name in ("triton_backend._moments_kernel", "triton_backend._reduce_kernel", "triton_backend._affine_kernel",
                 "triton_backend._affine2_kernel", "triton_blend_apply._blend_affine_kernel",
                 "triton_blend_apply._blend_affine2_kernel", "triton_backend._moments_nhwc_kernel",
                 "triton_backend._reduce_nhwc_kernel", "triton_backend._affine_nhwc_kernel",
                 "triton_backend._affine2_nhwc_kernel"):
        kernel = kernels[name]
        warps = spec.launch_warps(kernel)
        for dtype in ("fp32", "bf16"):
            src = spec.source(kernel, dtype, "fp32", True)
            kind = next(k for k in ("_affine_nhwc_kernel", "_nhwc_kernel", "_kernel")
                        if name.replace("_affine2_", "_affine_").endswith(k))
            for tile, size in tiles[kind].items():
                if tile in kernel.arg_names:
                    src.constants[(kernel.arg_names.index(tile),)] = size
            # What the launcher passes: 16-byte aligned pointers, sizes divisible by 16.
            src.attrs = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(kernel.params)
                         if not p.is_constexpr and (p.name.endswith("_ptr") or src.signature[p.name] == "i32")}
            compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=warps))
            ptx = compiled.asm["ptx"]
            with tempfile.TemporaryDirectory() as d:
                Path(d, "k.ptx").write_text(ptx)
                info = subprocess.run([tool("ptxas"), "-v", f"--gpu-name=sm_{arch}a", f"{d}/k.ptx", "-o",
                                       f"{d}/k.cubin"], capture_output=True, text=True).stderr
                Path(d, "k.cubin").write_bytes(compiled.asm["cubin"])
                sass = subprocess.run([tool("cuobjdump"), "-sass", f"{d}/k.cubin"], capture_output=True, text=True,
                                      check=True).stdout.splitlines()
            regs = re.search(r"Used (\d+) registers", info)
            spill = re.search(r"(\d+) bytes spill stores", info)
            report[f"{name.split('.')[-1]} {dtype}"] = dict(
                warps=warps, regs=int(regs.group(1)) if regs else -1, spill=int(spill.group(1)) if spill else -1,
                loads=dict(Counter(re.findall(r"ld\.global(?:\.\w+)*", ptx))), loop=main_loop(sass),
                instructions=sum(bool(re.match(r"\s*/\*[0-9a-f]{4}\*/", line)) for line in sass),
                int_div=len(re.findall(r"\b(?:div|rem)\.[su](?:32|64)\b", ptx)))
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--source", default=str(ROOT / "kernels" / "afnm_cuda.cu"))
    ap.add_argument("--cuda-kernel", default="<float, float", help="substring of the kernels to list")
    ap.add_argument("--listing", action="store_true", help="print the SASS of the matching CUDA kernels")
    ap.add_argument("--no-triton", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as d:
        obj = Path(d) / "k.o"
        compile_cuda(args.source, args.arch, obj)
        kernels = cuda_kernels(obj)
    print(f"# CUDA {Path(args.source).name}, sm_{args.arch}: kernels matching {args.cuda_kernel!r}")
    print(f"{'kernel':48} regs local  instr  LDG  LDG.128  STG.128  calls  loop: instr/16B load_span")
    for name, k in sorted(kernels.items()):
        if args.cuda_kernel in name:
            print(f"{name:48} {k['regs']:4} {k['local']:5} {k['instructions']:6} {k['ldg']:4} {k['ldg128']:8} "
                  f"{k['stg128']:8} {k['calls']:6}  {loop_columns(main_loop(k['sass']))}")
            if args.listing:
                print("\n".join(k["sass"]))
    if not args.no_triton:
        print(f"\n# Triton, sm_{args.arch}, as launched at 32x64x128x128 (NCHW and channels_last)")
        print(f"{'kernel':40} warps regs spill int_div  instr  loop: instr/16B load_span  global loads")
        for name, k in triton_kernels(args.arch).items():
            print(f"{name:40} {k['warps']:5} {k['regs']:4} {k['spill']:5} {k['int_div']:7} {k['instructions']:6}  "
                  f"{loop_columns(k['loop'])}  {k['loads']}")


if __name__ == "__main__":
    main()
