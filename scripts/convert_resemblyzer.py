"""Convert Resemblyzer's speaker encoder (``resemblyzer/pretrained.pt``) to the NumPy file Cesar ships.

Run once, by hand, where torch is installed (a scratch virtual environment; Cesar itself never needs torch)::

    pip download resemblyzer==0.1.4 --no-deps -d /tmp/rz
    unzip -o /tmp/rz/Resemblyzer-0.1.4-py3-none-any.whl resemblyzer/pretrained.pt -d /tmp/rz
    python scripts/convert_resemblyzer.py /tmp/rz/resemblyzer/pretrained.pt \
        cesar_common/diarization/resemblyzer.npz

Only the model's weights are kept (the checkpoint also holds the optimizer's state), as float32 under
torch's own names (``lstm.weight_ih_l0``, ..., ``linear.bias``).
"""

from __future__ import annotations

import sys

import numpy as np
import torch


def main(source: str, target: str) -> None:
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    state = checkpoint["model_state"]
    arrays = {
        name: tensor.detach().numpy().astype(np.float32)
        for name, tensor in state.items()
        if name.startswith(("lstm.", "linear."))
    }
    np.savez_compressed(target, **arrays)
    for name, array in sorted(arrays.items()):
        print(name, array.shape)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
