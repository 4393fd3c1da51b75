"""Does bfloat16 training of a small 3D U-Net stay finite on this CPU? (Why 3D networks train
in float32 on the CPU: see napari_unet.devices.autocast_dtype.)

    python benchmarks/bf16_conv3d.py cl bf16      # channels_last_3d, bf16 autocast
    python benchmarks/bf16_conv3d.py contig bf16  # contiguous, bf16 autocast
    python benchmarks/bf16_conv3d.py cl fp32      # float32 (the control)

60 runs of 8 Adam steps on random 2x1x8x32x32 input, unet3d depth 2 width 4; prints how many
runs produced non-finite network outputs.
"""
import torch, sys
from napari_unet.models import PaperUNet
torch.manual_seed(0)
fmt = torch.channels_last_3d if sys.argv[1] == "cl" else torch.contiguous_format
bad = 0
for trial in range(60):
    net = PaperUNet(1, 2, 2, 4, True, padded=True, dims=3).to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x = torch.randn(2, 1, 8, 32, 32).contiguous(memory_format=fmt)
    for step in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=sys.argv[2] == "bf16"):
            y = net(x)
        if not torch.isfinite(y).all():
            bad += 1; break
        loss = y.float().mean(); opt.zero_grad(); loss.backward(); opt.step()
print(sys.argv[1], "runs with non-finite outputs:", bad, "/ 60")
