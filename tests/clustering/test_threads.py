"""One clustered model called from several threads at once gives every thread its single-thread answer."""
import threading

import torch
import torch.nn.functional as F

import wclust
from wclust.clustering.modules import ClusteredConv2d, ClusteredWrapper


class PaddedConv(torch.nn.Conv2d):
    """A Conv2d subclass that pads inside its own forward (reads self.weight there)."""

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.weight, self.bias, self.stride)


class Scaled(torch.nn.Linear):
    def forward(self, x):
        return 0.5 * F.linear(x, self.weight, self.bias)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = PaddedConv(3, 8, 3)
        self.c2 = PaddedConv(8, 8, 3, stride=2)
        self.c3 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = Scaled(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.fc(x.flatten(1))


def test_wrapped_modules_from_four_threads_match_single_thread():
    torch.manual_seed(0)
    model = wclust.compress(SmallCNN().eval(), wclust.ClusterConfig(16, min_size=1), progress=False)
    assert type(model.c1) is ClusteredConv2d and type(model.fc) is ClusteredWrapper
    inputs = [torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    with torch.no_grad():
        want = [model(x) for x in inputs]
    errors, mismatches, go = [], [], threading.Barrier(4)

    def worker(t):
        try:
            go.wait()
            with torch.no_grad():
                for r in range(40):
                    i = (t + r) % len(inputs)
                    if not torch.equal(model(inputs[i]), want[i]):
                        mismatches.append((t, r))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and mismatches == []
    assert "weight" not in model.c1.inner._parameters and "weight" not in vars(model.c1.inner)  # nothing left behind
