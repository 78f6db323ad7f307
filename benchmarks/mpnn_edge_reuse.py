"""The MPNN of model kind ``mpnn`` against the same network run as Nash-MTL's code runs it: one training step (forward
and backward) on a batch of QM9-sized molecules, mtlab's edge network run once a batch vs NNConv's run at each of the
3 message-passing rounds (``experiments/quantum_chemistry/models.py``). Same parameters, same batch, same outputs.

    python benchmarks/mpnn_edge_reuse.py [--repeats 5] [--molecules 120] [--atoms 18] [--threads 1]

Prints the CPU, the load average, each variant's median step time and the ratio (theirs / mtlab's) measured in this
run. Needs PyTorch Geometric (``pip install 'mtlab[graph]'``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from machine import cpu_summary, load_average

from mtlab.data.molecules import MoleculeLayout, pack, unpack
from mtlab.models.mpnn import Mpnn

TARGETS = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv")
LAYOUT = MoleculeLayout(slots=29, features=11, bond_types=4)  # QM9's


def molecules(count: int, atoms: int, seed: int = 0) -> torch.Tensor:
    """``count`` random molecules of ``atoms`` atoms, each a chain with a bond between neighbours (both ways)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.full((count,), atoms)
    x = torch.rand(count * atoms, LAYOUT.features, generator=generator)
    pos = torch.randn(count * atoms, 3, generator=generator) * 1.5
    source = torch.arange(atoms - 1)
    chain = torch.cat([torch.stack([source, source + 1]), torch.stack([source + 1, source])], dim=1)  # (2, 2(n-1))
    edges = chain.repeat(1, count)
    kinds = torch.randint(0, LAYOUT.bond_types, (count * chain.shape[1],), generator=generator)
    return pack(LAYOUT, sizes, x, pos, edges, kinds, torch.full((count,), chain.shape[1]))


def theirs(model: Mpnn, batch: torch.Tensor) -> torch.Tensor:
    """The same network as Nash-MTL's forward runs it: NNConv called at every round, its edge network each time."""
    trunk = model.trunk
    graph = unpack(batch, trunk.layout)
    out = F.relu(trunk.lin0(graph.x))
    h = out[None]
    for _ in range(trunk.message_steps):
        m = F.relu(trunk.conv(out, graph.edge_index, graph.edge_attr))
        out, h = trunk.gru(m[None], h)
        out = out[0]
    z = F.relu(trunk.lin1(trunk.set2set(out, graph.batch, dim_size=graph.molecules)))
    return torch.cat([head(z) for head in model.heads.values()], dim=1)


def ours(model: Mpnn, batch: torch.Tensor) -> torch.Tensor:
    return torch.cat(list(model(batch).values()), dim=1)


def step_seconds(forward, model: Mpnn, batch: torch.Tensor) -> float:
    """Wall time of one training step: forward, a loss, backward."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    forward(model, batch).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--molecules", type=int, default=120, help="batch size (Nash-MTL: 120)")
    parser.add_argument("--atoms", type=int, default=18, help="atoms a molecule (QM9's mean: 18)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Mpnn({t: 1 for t in TARGETS}, LAYOUT, dim=64, message_steps=3, set2set_steps=3, edge_hidden=128)
    batch = molecules(args.molecules, args.atoms)
    with torch.no_grad():
        torch.testing.assert_close(ours(model, batch), theirs(model, batch), atol=1e-4, rtol=1e-4)
    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, {args.threads} thread(s); load average {load_average()}")
    print(f"batch: {args.molecules} molecules of {args.atoms} atoms, dim 64 (Nash-MTL's QM9 network); median of "
          f"{args.repeats} steps (forward + backward) after a warm-up, alternating the two variants")
    variants = {"theirs": theirs, "mtlab": ours}
    for forward in variants.values():  # a warm-up step each, not timed
        step_seconds(forward, model, batch)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # alternate, so that a change of load hits both
        for name, forward in variants.items():
            times[name].append(step_seconds(forward, model, batch))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"NNConv at every round (theirs): {median['theirs']:.3f} s a step")
    print(f"edge network once (mtlab):      {median['mtlab']:.3f} s a step")
    print(f"ratio theirs / mtlab: {median['theirs'] / median['mtlab']:.2f}x; load average after: {load_average()}")


if __name__ == "__main__":
    main()
