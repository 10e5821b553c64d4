"""onnxruntime's own int8 form of a bundle's fp32 graphs, shared by the benchmark
scripts: quantize_dynamic, int8 weights per output channel, activations quantized
at run time."""
from pathlib import Path


def int8_graphs(model, graphs, cache):
    """Paths of `graphs` (names of MODEL/NAME.onnx) in int8, written to CACHE once."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    Path(cache).mkdir(parents=True, exist_ok=True)
    paths = {}
    for g in graphs:
        dst = f"{cache}/{g}.onnx"
        if not Path(dst).exists():
            # Past protobuf's 2 GB (BLIP-2 OPT-2.7B), the output needs external data too.
            src = Path(f"{model}/{g}.onnx")
            big = sum(f.stat().st_size for f in src.parent.iterdir() if f.is_file()) > 2**31
            quantize_dynamic(str(src), dst, per_channel=True, weight_type=QuantType.QInt8,
                             use_external_data_format=big)
        paths[g] = dst
    return paths
