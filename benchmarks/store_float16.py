"""Write a model file with its weights stored as float16 (half the size), e.g. the bundled model.

    python benchmarks/store_float16.py IN.safetensors OUT.safetensors

Then score both with benchmarks/eval_sets.sh: the rounding must not change the scores.
"""

import sys

from napari_unet.modelfile import UNetModel

src, dst = sys.argv[1], sys.argv[2]
UNetModel.load(src).save(dst, float16=True)
print(f"{dst}: weights stored as float16")
