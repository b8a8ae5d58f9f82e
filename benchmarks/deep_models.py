"""Deep generative models: speed against hand-written PyTorch, and accuracy against the literature.

    python benchmarks/deep_models.py                 # everything (about 5 minutes on 1 CPU thread)
    python benchmarks/deep_models.py --only speed    # or: vae, graph_vae, cora

1. speed: one SVI step of each model (Pyro's `SVI` on the model and its guide, as `fit` runs it) against a
   hand-written PyTorch loop computing the same ELBO with the same networks and optimiser (the floor);
   median milliseconds per step and their ratio.
2. vae: the default fit on the digits; per-datum training / held-out ELBO, held-out IWAE(K=1000) and
   the factorised-Bernoulli baseline; wall time of the fit.
3. graph_vae: the default fit; held-out reconstruction against Erdos-Renyi, and validity, uniqueness,
   novelty and MMD of 1000 samples against Erdos-Renyi and the stochastic block model.
4. cora: VGAE link prediction on Cora (../shared/data/cora) with the protocol of Kipf & Welling (2016):
   85/5/10 edge split, as many non-edges as test edges, 200 steps of Adam at lr 0.01, GCN 32-16, mean
   and standard deviation over 10 runs, next to the paper's AUC 91.4 / AP 92.6.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import fit  # noqa: E402
from ppl_models import graph_vae as gv  # noqa: E402
from ppl_models import vae, vgae  # noqa: E402

PAPER_AUC, PAPER_AP = 91.4, 92.6


def shared_data() -> Path | None:
    repo = Path(__file__).resolve().parents[1]
    for candidate in (repo.parent / "shared" / "data", Path("/work/shared/data")):
        if (candidate / "cora" / "cora.npz").exists():
            return candidate
    return None


def timed(step, warmup: int = 20, steps: int = 200, repeats: int = 5) -> float:
    """Median over `repeats` of the mean milliseconds per call of `step`."""
    for _ in range(warmup):
        step()
    means = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps // repeats):
            step()
        means.append((time.perf_counter() - t0) * 1000 / (steps // repeats))
    return statistics.median(means)


def pyro_step(model, guide, data: dict):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    return lambda: svi.step(**data)


def torch_step(params, loss_fn):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def normal_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) summed over the last axis."""
    return (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum(-1)


# ---- 1. speed --------------------------------------------------------------------------------------------
def speed_vae() -> tuple[float, float]:
    train, _ = vae.digits_split(0)
    x = torch.as_tensor(train)
    data = {"x": x, "batch_size": 128}
    pyro_ms = timed(pyro_step(vae.vae, vae.vae_guide, data))
    torch.manual_seed(0)
    enc, dec = vae.Encoder(64, (256,), 8, "mlp"), vae.Decoder(64, (256,), 8, "mlp")
    n = len(x)

    def loss():
        xb = x[torch.randperm(n)[:128]]
        loc, scale = enc(xb)
        z = loc + scale * torch.randn_like(loc)
        rec = -nn.functional.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)
        return -(n / 128) * (rec - normal_kl(loc, scale)).sum()
    torch_ms = timed(torch_step(list(enc.parameters()) + list(dec.parameters()), loss))
    return pyro_ms, torch_ms


def speed_graph_vae() -> tuple[float, float]:
    data = {k: torch.as_tensor(v) if k != "batch_size" else v for k, v in gv.default_data(0).items()}
    pyro_ms = timed(pyro_step(gv.graph_vae, gv.graph_vae_guide, data), steps=100)
    torch.manual_seed(0)
    adjacency, features = data["adjacency"], data["features"]
    g, m, f = features.shape
    enc, dec = gv.Encoder(f, 128, 8), gv.Decoder(m, f, 128, 8)

    def loss():
        idx = torch.randperm(g)[:32]
        a, x = adjacency[idx], features[idx]
        loc, scale = enc(x, a)
        z = loc + scale * torch.randn_like(loc)
        type_logits, emb = dec.nodes(z)
        perm = gv.match(dec, type_logits, emb, x, a)
        type_logits, emb = gv.gather_slots(type_logits, perm), gv.gather_slots(emb, perm)
        types = gv.with_empty(x)
        ll_x = (types * type_logits.log_softmax(-1)).sum((-1, -2))
        logits = dec.edges(emb, types)
        present = 1 - types[..., 0]
        pairs = torch.triu(torch.ones(m, m), 1) * present.unsqueeze(-1) * present.unsqueeze(-2)
        ll_a = ((a * nn.functional.logsigmoid(logits) + (1 - a) * nn.functional.logsigmoid(-logits)) * pairs).sum((-1, -2))
        return -(g / 32) * (ll_x + ll_a - normal_kl(loc, scale)).sum()
    torch_ms = timed(torch_step(list(enc.parameters()) + list(dec.parameters()), loss), steps=100)
    return pyro_ms, torch_ms


def speed_vgae() -> tuple[float, float]:
    graph = vgae.planted_partition(0, groups=10, size=100, p_in=0.05, p_out=0.001)   # 1000 nodes
    edges, features = torch.as_tensor(graph["edges"]), torch.as_tensor(graph["features"])
    pyro_ms = timed(pyro_step(vgae.vgae, vgae.vgae_guide, {"edges": edges, "features": features}), steps=100)
    torch.manual_seed(0)
    n, e = features.shape[0], len(edges)
    non_edges = n * (n - 1) / 2 - e
    gcn = vgae.GCN(features.shape[1], 32, 16)

    def loss():
        a_hat = vgae.normalized_adjacency(edges, n)
        loc, scale = gcn(features, a_hat)
        z = loc + scale * torch.randn_like(loc)
        neg = vgae.sample_non_edges(edges, n, e)
        pos_ll = nn.functional.logsigmoid(vgae.pair_logits(z, edges)).sum() * (non_edges / e)
        neg_ll = nn.functional.logsigmoid(-vgae.pair_logits(z, neg)).sum() * (non_edges / e)
        return -(pos_ll + neg_ll - normal_kl(loc, scale).sum())
    torch_ms = timed(torch_step(gcn.parameters(), loss), steps=100)
    return pyro_ms, torch_ms


def run_speed() -> None:
    print("\n== SVI step time: Pyro model + guide vs a hand-written PyTorch loop of the same ELBO ==")
    print(f"{'model':<12}{'pyro ms/step':>14}{'torch ms/step':>15}{'ratio':>8}")
    for name, bench in (("vae", speed_vae), ("graph_vae", speed_graph_vae), ("vgae", speed_vgae)):
        p, t = bench()
        print(f"{name:<12}{p:>14.2f}{t:>15.2f}{p / t:>8.2f}", flush=True)


# ---- 2. VAE ----------------------------------------------------------------------------------------------
def run_vae(out: Path) -> None:
    print("\n== VAE on scikit-learn digits (default fit: 2000 steps, mini-batches of 128) ==")
    train, test = vae.digits_split(0)
    t0 = time.perf_counter()
    post = fit("vae", method="svi", num_samples=10, progress=False)
    seconds = time.perf_counter() - t0
    report = vae.evaluate(post.data, test, K=1000)
    for k, v in report.items():
        print(f"{k:<28}{v:>10.3f}  nats per image")
    print(f"{'fit wall time':<28}{seconds:>10.1f}  s")
    paths = vae.save_image_grids(out, post.data)
    print("grids:", ", ".join(str(p) for p in paths.values()))


# ---- 3. GraphVAE -----------------------------------------------------------------------------------------
def run_graph_vae() -> None:
    print("\n== GraphVAE on cycles / paths / stars / grids of 4-10 nodes (default fit) ==")
    train, test = gv.family_split(0)
    t0 = time.perf_counter()
    post = fit("graph_vae", method="svi", num_samples=2, progress=False)
    seconds = time.perf_counter() - t0
    print(f"fit wall time {seconds:.1f} s")
    unseen = gv.reconstruction_report(post.data, gv.graphs_to_data(test, max_nodes=10))
    fresh, _ = gv.family_split(seed=1, copies=1)         # training members in new node orders
    seen = gv.reconstruction_report(post.data, gv.graphs_to_data(fresh, max_nodes=10))
    print(f"{'reconstruction':<34}{'balanced acc':>13}{'loglik/pair':>12}{'exact':>7}{'types':>7}")
    for label, rec in ((f"unseen members ({', '.join(gv.HELD_OUT)})", unseen),
                       ("seen members, new node orders", seen)):
        for who in ("model", "er"):
            types = f"{rec['model_type_accuracy']:>7.3f}" if who == "model" else f"{'':>7}"
            print(f"{label if who == 'model' else '  Erdos-Renyi':<34}{rec[f'{who}_balanced_accuracy']:>13.3f}"
                  f"{rec[f'{who}_loglik_per_pair']:>12.3f}{rec[f'{who}_exact']:>7.2f}{types}")
    gen = gv.generation_report(post.data, train, num=1000, seed=0)
    print(f"{'1000 samples':<16}{'validity':>10}{'unique':>8}{'novel':>7}{'deg MMD':>9}{'clus MMD':>10}")
    for who, s in gen.items():
        print(f"{who:<16}{s['validity']:>10.3f}{s['uniqueness']:>8.3f}{s['novelty']:>7.3f}"
              f"{s['degree_mmd']:>9.4f}{s['clustering_mmd']:>10.4f}")


# ---- 4. Cora ---------------------------------------------------------------------------------------------
def run_cora(runs: int = 10) -> None:
    root = shared_data()
    print("\n== VGAE link prediction on Cora, Kipf & Welling protocol ==")
    if root is None:
        print("skipped: ../shared/data/cora/cora.npz is absent")
        return
    cora = vgae.load_cora(str(root))
    n = len(cora["features"])
    rows = []
    t0 = time.perf_counter()
    for run in range(runs):
        split = vgae.split_edges(cora["edges"], n, seed=run)
        post = fit("vgae", data={"edges": split["train"], "features": cora["features"]}, method="svi",
                   num_steps=200, lr=0.01, tol=0, num_samples=1, progress=False, seed=run)
        rows.append(vgae.link_prediction_report(post.data, split))
        print(f"run {run}: AUC {100 * rows[-1]['auc']:.1f}  AP {100 * rows[-1]['ap']:.1f}", flush=True)
    seconds = (time.perf_counter() - t0) / runs

    def stat(key):
        values = 100 * np.array([r[key] for r in rows])
        return f"{values.mean():6.1f} +- {values.std(ddof=1):.1f}"
    print(f"{'':<22}{'AUC':>14}{'AP':>14}")
    print(f"{'VGAE (this suite)':<22}{stat('auc'):>14}{stat('ap'):>14}")
    print(f"{'VGAE (paper)':<22}{PAPER_AUC:>14.1f}{PAPER_AP:>14.1f}")
    print(f"{'common neighbours':<22}{stat('common_neighbours_auc'):>14}{stat('common_neighbours_ap'):>14}")
    print(f"mean of {runs} runs; {seconds:.1f} s per run (fit + evaluation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("speed", "vae", "graph_vae", "cora"))
    parser.add_argument("--out", default="benchmark_out", help="directory for the VAE image grids")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 makes timings comparable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs = {"speed": run_speed, "vae": lambda: run_vae(Path(args.out)), "graph_vae": run_graph_vae,
            "cora": run_cora}
    for name, job in jobs.items():
        if args.only in (None, name):
            job()


if __name__ == "__main__":
    main()
