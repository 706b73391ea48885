"""GNN and PointNet on real structures: Zachary's karate club, the Florentine families and the Davis southern
women graphs (shipped with networkx), and a point cloud lifted from skimage's `coins` image. Invariances are
checked to atol 1e-5 (float32)."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ShapeError
from xmodal.nn.encoders.gnn import GNNEncoder, batch_graphs, scatter
from xmodal.nn.encoders.pointnet import PointNetEncoder


def _real_graphs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(node features, edge_index) per graph; features: degree, clustering coefficient, core number, a bias."""
    nx = pytest.importorskip("networkx")
    out = []
    for g in (nx.karate_club_graph(), nx.florentine_families_graph(), nx.davis_southern_women_graph()):
        g = nx.convert_node_labels_to_integers(g)
        clustering, core = nx.clustering(g), nx.core_number(g)
        x = torch.tensor(
            [[g.degree(v) / 10, clustering[v], core[v] / 5, 1.0] for v in g.nodes], dtype=torch.float32
        )
        e = torch.tensor(list(g.edges), dtype=torch.long).T
        out.append((x, torch.cat([e, e.flip(0)], dim=1)))  # undirected: both directions
    return out


def test_scatter_reductions() -> None:
    src = torch.tensor([[1.0], [2.0], [5.0], [-3.0]])
    idx = torch.tensor([0, 0, 2, 2])
    assert scatter(src, idx, 4, "sum").flatten().tolist() == [3.0, 0.0, 2.0, 0.0]
    assert scatter(src, idx, 4, "mean").flatten().tolist() == [1.5, 0.0, 1.0, 0.0]
    assert scatter(src, idx, 4, "max").flatten().tolist() == [2.0, 0.0, 5.0, 0.0]


@pytest.mark.parametrize("aggr,pool", [("sum", "mean"), ("mean", "max"), ("max", "sum")])
def test_gnn_batching_and_node_relabelling(aggr: str, pool: str) -> None:
    torch.manual_seed(0)
    graphs = _real_graphs()
    enc = GNNEncoder(4, hidden=16, depth=3, out_dim=8, aggr=aggr, pool=pool).eval()
    x, edges, batch = batch_graphs(graphs)
    with torch.no_grad():
        batched = enc(x, edges, batch)
        assert batched.shape == (3, 8)
        for i, (xi, ei) in enumerate(graphs):  # a graph alone = the same graph inside a batch
            torch.testing.assert_close(batched[i], enc(xi, ei)[0], atol=1e-5, rtol=1e-5)
        # Relabel every node at random: graph embeddings unchanged, node embeddings permuted alike.
        perm = torch.randperm(x.shape[0])  # new node k is old node perm[k]
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(len(perm))
        relabelled = enc({"x": x[perm], "edge_index": inverse[edges], "batch": batch[perm]})
        torch.testing.assert_close(relabelled, batched, atol=1e-5, rtol=1e-5)
        nodes = enc.forward_nodes(x, edges)
        torch.testing.assert_close(
            enc.forward_nodes(x[perm], inverse[edges]), nodes[perm], atol=1e-5, rtol=1e-5
        )
        # Not vacuous: rewiring the edges changes the embedding.
        assert not torch.allclose(enc(x, edges.roll(1, dims=1).flip(0)[:, :-5], batch), batched, atol=1e-4)


def test_gnn_edge_features_and_errors() -> None:
    torch.manual_seed(0)
    (x, e), *_ = _real_graphs()
    enc = GNNEncoder(4, hidden=8, depth=1, edge_dim=2)
    assert enc(x, e, edge_attr=torch.randn(e.shape[1], 2)).shape == (1, 8)
    with pytest.raises(ShapeError, match="edge_attr"):
        enc(x, e)
    with pytest.raises(ShapeError, match="outside"):
        enc(x, e + 100)


def _coins_points(n: int = 300) -> torch.Tensor:
    """(1, n, 3) points (x, y, intensity) from the brightest pixels of skimage's coins photograph."""
    data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(data.coins()).float() / 255.0
    ys, xs = torch.nonzero(img > 0.6, as_tuple=True)
    pick = torch.linspace(0, len(ys) - 1, n).long()
    pts = torch.stack([xs[pick] / img.shape[1], ys[pick] / img.shape[0], img[ys[pick], xs[pick]]], dim=-1)
    return (pts - pts.mean(0))[None]


@pytest.mark.parametrize("input_transform", [False, True])
def test_pointnet_permutation_invariance_and_mask(input_transform: bool) -> None:
    torch.manual_seed(0)
    pts = _coins_points()
    enc = PointNetEncoder(3, widths=(16, 32), out_dim=8, input_transform=input_transform).eval()
    with torch.no_grad():
        if input_transform:  # a non-identity transform, to exercise it
            enc.tnet.head[-1].bias.normal_(0, 0.3)
        out = enc(pts)
        assert out.shape == (1, 8)
        torch.testing.assert_close(enc(pts[:, torch.randperm(pts.shape[1])]), out, atol=1e-5, rtol=1e-5)
        padded = torch.cat([pts, 50 * torch.ones(1, 20, 3)], 1)  # far-away junk in padded slots
        mask = torch.cat([torch.ones(1, 300), torch.zeros(1, 20)], 1).bool()
        torch.testing.assert_close(enc(padded, mask), out, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(enc(padded), out, atol=1e-4)


def test_gnn_structure_inputs_are_degrees_and_sizes() -> None:
    """``structure=True``: every node's input gains log(1 + in-degree) and the readout log(1 + nodes); hand-worked
    on a star of 4 nodes (centre degree 3, leaves 1) batched with a triangle (every degree 2)."""
    import math

    star = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    triangle = torch.tensor([[0, 1, 2, 1, 2, 0], [1, 2, 0, 0, 1, 2]])
    x, e, b = batch_graphs([(torch.ones(4, 2), star), (torch.ones(3, 2), triangle)])
    enc = GNNEncoder(2, hidden=8, depth=1, structure=True)
    seen: dict[str, torch.Tensor] = {}
    enc.input.register_forward_hook(lambda m, args, out: seen.__setitem__("nodes", args[0]))
    enc.size.register_forward_hook(lambda m, args, out: seen.__setitem__("sizes", args[0]))
    out = enc(x, e, b)
    assert out.shape == (2, 8)
    degrees = [3, 1, 1, 1, 2, 2, 2]
    assert torch.allclose(seen["nodes"], torch.tensor([[1.0, 1.0, math.log1p(d)] for d in degrees]))
    assert torch.allclose(seen["sizes"], torch.tensor([[math.log1p(4)], [math.log1p(3)]]))
    # without it, the encoder and its parameters are what they were
    plain = GNNEncoder(2, hidden=8, depth=1)
    assert plain.size is None and plain.input.in_features == 2
