"""Does batching 3D tiles pay on the CPU, and are 3D convolutions batch-invariant?
Forward passes of 4 tiles of 96x192x192 (padded unet3d, random weights and input, channels_last_3d,
float32) as one batch and one by one; prints the times and the largest difference of the outputs.

    python benchmarks/batch3d.py
"""
import torch, time
from napari_unet.modelfile import UNetModel
from napari_unet.config import ModelConfig
for cfg in [dict(arch="unet3d", depth=2, base_width=8), dict(arch="unet3d", depth=4, base_width=16)]:
    m=UNetModel.create(ModelConfig(mode="semantic", classes=2, **cfg)).network.eval().to(memory_format=torch.channels_last_3d)
    x=torch.randn(4,1,96,192,192).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        m(x[:1])
        t=time.time(); m(x); t4=time.time()-t
        t=time.time(); [m(x[i:i+1]) for i in range(4)]; t1=time.time()-t
        a=m(x); b=torch.cat([m(x[i:i+1]) for i in range(4)])
    print(cfg, f"batch4 {t4:.2f}s  4x batch1 {t1:.2f}s", (a-b).abs().max().item())
