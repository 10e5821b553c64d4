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
            quantize_dynamic(f"{model}/{g}.onnx", dst, per_channel=True, weight_type=QuantType.QInt8)
        paths[g] = dst
    return paths
