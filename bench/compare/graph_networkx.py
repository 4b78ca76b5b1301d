"""The preference-graph pipeline in networkx, for the speed ratio of issue 4.

usage: graph_networkx.py [--nodes 100000] [--edges 1000000] [--top 5000] [--neg-hops 3]
                         [--anchors N] [--melgraph build/apps/melgraph] [--dir DIR]

Generates a power-law edge list like bench/bench_graph.cpp's (src uniform; dst at rank
floor(N u^2.5), scattered over ids; numpy's RNG, not Philox, so the graph is statistically the
same, not identical) and a catalog with audio for 70% of the nodes, then times in networkx:
  load     read the file into a DiGraph (self-loops dropped, as the loader does)
  select   in-degree, top K with audio by (-in-degree, id)
  near     per selected anchor, BFS on the undirected view up to neg_hops - 1 hops, keeping the
           selected items reached (what TripletTables::build stores)
With --anchors N only N anchors' BFS (spread evenly over the ranking) are timed and the total is extrapolated
linearly (said so in the output): networkx needs minutes for all 5,000 on this graph.
With --melgraph it also runs `melgraph graph select` on the same files and prints the ratio of
the wall times (the CLI's load + selection + tables, as its "time:" line reports).
"""
import argparse
import os
import re
import subprocess
import tempfile
import time

import networkx as nx
import numpy as np


def generate(path, catalog, n, m, seed=20261124):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, size=m, dtype=np.int64)
    u = rng.random(m)
    rank = np.minimum((n * u ** 2.5).astype(np.int64), n - 1)
    dst = (rank * 2654435761) % n
    with open(path, "w") as f:
        f.write("src,dst\n")
        f.writelines("n%d,n%d\n" % (s, d) for s, d in zip(src.tolist(), dst.tolist()))
    audio = np.flatnonzero(rng.random(n) < 0.7)
    with open(catalog, "w") as f:
        f.write("id,path\n")
        f.writelines("n%d,a/n%d.wav\n" % (i, i) for i in audio.tolist())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100000)
    ap.add_argument("--edges", type=int, default=1000000)
    ap.add_argument("--top", type=int, default=5000)
    ap.add_argument("--neg-hops", type=int, default=3)
    ap.add_argument("--anchors", type=int, default=0, help="time only this many BFS (0: all)")
    ap.add_argument("--melgraph", default="")
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    d = a.dir or tempfile.mkdtemp(prefix="melgraph-nx-")
    edges, catalog = os.path.join(d, "edges.csv"), os.path.join(d, "catalog.csv")
    generate(edges, catalog, a.nodes, a.edges)

    t0 = time.perf_counter()
    G = nx.DiGraph()
    with open(edges) as f:
        next(f)
        for line in f:
            s, t = line.rstrip("\n").split(",")
            if s != t:
                G.add_edge(s, t)
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    with open(catalog) as f:
        next(f)
        audio = set(line.split(",", 1)[0] for line in f)
    indeg = dict(G.in_degree())
    selected = sorted((v for v in G if v in audio), key=lambda v: (-indeg[v], v))[: a.top]
    t_select = time.perf_counter() - t0

    sel = set(selected)
    H = G.to_undirected(as_view=True)
    # Evenly spread over the ranking: the top anchors are hubs with the largest neighbourhoods,
    # so the first N alone would overstate the total.
    anchors = selected[:: max(1, len(selected) // a.anchors)][: a.anchors] if a.anchors else selected
    t0 = time.perf_counter()
    near_total = 0
    for v in anchors:
        reach = nx.single_source_shortest_path_length(H, v, cutoff=a.neg_hops - 1)
        near_total += sum(1 for w in reach if w in sel and w != v)
    t_near = (time.perf_counter() - t0) * len(selected) / len(anchors)
    total = t_load + t_select + t_near
    extra = "" if len(anchors) == len(selected) else " (extrapolated from %d anchors)" % len(anchors)
    print("networkx %s: %d nodes, %d edges, K=%d" % (nx.__version__, G.number_of_nodes(), G.number_of_edges(), len(selected)))
    print("  load %.2f s, in-degree + select %.2f s, near sets %.2f s%s, total %.2f s" % (t_load, t_select, t_near, extra, total))
    print("  near entries (timed anchors): %d" % near_total)
    if a.melgraph:
        t0 = time.perf_counter()
        out = subprocess.run([a.melgraph, "graph", "select", "--edges", edges, "--catalog", catalog, "--top",
                              str(a.top), "--neg-hops", str(a.neg_hops), "--out", os.path.join(d, "tables.st")],
                             check=True, capture_output=True, text=True).stdout
        wall = time.perf_counter() - t0
        m = re.search(r"time: ([0-9.]+) s", out)
        print("melgraph graph select: %.2f s wall (%s s reported)" % (wall, m.group(1) if m else "?"))
        print("ratio networkx / melgraph: %.1fx" % (total / wall))


if __name__ == "__main__":
    main()
