"""Research (issue #22): which portable rejection SCORE beats rule v1 on the open-set test rows.

Every candidate is a function of what a classifier has per query: the squared distances to all C
prototypes, each class's shot count k, its prototype's squared length ||p||^2 and (``spread``
candidates only) its mean squared embedding length (a store field it does not have today). Each is
fitted and its taus calibrated ONLY on the default model's held-out background alphabets (the
episodes of export/threshold.py: 5/20-way x 1/2/5 shots, as many unknown classes, 5 queries), then
measured on benchmarks/open_set.py's rows (Omniglot evaluation 5/20-way x 1/2/5 shots, MNIST 5+5
unknown x 1/5 shots, 15 queries) with the same episodes for every candidate.

Higher score = more likely unknown; a query is accepted iff score <= tau. Columns: the calibration
EER (mean of the kinds' curves, in-sample for fitted weights), per test row the oracle EER of the
score on that row's own queries and FRR / FAR at the calibrated ``balanced`` tau.

    EDGEMETA_DATA=../shared/data python benchmarks/open_set_variants.py [--episodes 500] [--seed 0]
        [--cache /tmp/R] [--query-views 1|5] [--no-support-shift] [--bank] [--small-c] [--refit] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from open_set import MNIST_TASKS, OMNIGLOT_TASKS, eer  # noqa: E402  (reused: the rows and the oracle EER)

from edgemeta.export.threshold import CAL_SHOTS, CAL_WAYS, equal_error_tau, error_curves, tau_at  # noqa: E402
from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec  # noqa: E402
from edgemeta.runtime import EmbeddingModel  # noqa: E402

EPS = 1e-12


# ---------------------------------------------------------------- episodes -> per-query features


def features(
    q: np.ndarray,
    s: np.ndarray,
    targets: np.ndarray,
    spec: EpisodeSpec,
    episodes: int,
    rng: np.random.Generator,
    dbank: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per query [E, T]: d1, d2 (inf when C = 1), sqn (||p_c||^2 of the nearest), spread (mean
    squared distance of the nearest class's support embeddings to their prototype), dmean (mean
    distance to the other prototypes), k, C; ``known`` = number of genuine queries per episode."""
    ep = EpisodeSampler(targets, spec).sample(rng, episodes)
    e, n, k = ep.support.shape
    sup = s[ep.support]  # [E, N, K, D]
    protos = sup.mean(axis=2)
    psq = np.einsum("end,end->en", protos, protos)
    spread = np.einsum("enkd,enkd->en", sup, sup) / k - psq  # needs sum ||x||^2 per class
    qs = q[ep.query.reshape(e, -1)]
    d = np.einsum("etd,etd->et", qs, qs)[:, :, None] + psq[:, None, :] - 2 * np.matmul(qs, protos.transpose(0, 2, 1))
    d = np.maximum(d, 0.0).astype(np.float64)
    order = np.argsort(d, axis=2)
    best = order[:, :, 0]
    d1 = np.take_along_axis(d, best[..., None], 2)[..., 0]
    d2 = np.take_along_axis(d, order[:, :, 1:2], 2)[..., 0] if n > 1 else np.full_like(d1, np.inf)
    dmean = (d.sum(axis=2) - d1) / max(n - 1, 1) if n > 1 else np.full_like(d1, np.inf)
    d3 = np.take_along_axis(d, order[:, :, 2:3], 2)[..., 0] if n > 2 else np.full_like(d1, np.inf)
    bank = dbank[ep.query.reshape(e, -1)].astype(np.float64) if dbank is not None else np.full_like(d1, np.inf)
    truth = np.repeat(np.arange(ep.query.shape[1]), ep.query.shape[2])
    return {
        "correct": best == truth[None, :],
        "dbank": bank,
        "d1": d1,
        "d2": d2,
        "d3": d3,
        "qn": np.einsum("etd,etd->et", qs, qs).astype(np.float64),
        "dmean": dmean,
        "sqn": np.take_along_axis(psq, best, 1).astype(np.float64),
        "spread": np.take_along_axis(spread, best, 1).astype(np.float64),
        "k": np.full_like(d1, k),
        "C": np.full_like(d1, n),
        "dall": d,
        "known": spec.way * spec.query,
    }


def split(f: dict[str, Any], score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return score[:, : f["known"]].ravel(), score[:, f["known"] :].ravel()


# ---------------------------------------------------------------- candidate scores (numpy, a few lines each)


def log_rel(f, beta, gamma):
    """v1's score: log(d1 / (||p||^2 (1 + beta/k) C^-gamma))."""
    return np.log(f["d1"] + EPS) - np.log(f["sqn"] + EPS) - np.log1p(beta / f["k"]) + gamma * np.log(f["C"])


def log_ratio(f, c1=0.0):
    """log(d1 / d2); with C = 1 the constant c1 (stored)."""
    r = np.log((f["d1"] + EPS) / (f["d2"] + EPS))
    return np.where(np.isfinite(f["d2"]), r, c1)


def softmax_nll(f, temp):
    """-log softmax of the nearest class at temperature temp, distances relative to ||p_j||^2-free
    median scale: logsumexp(-(d_j - d1) / (temp * ||p_c||^2))."""
    z = -(f["dall"] - f["d1"][..., None]) / (temp * f["sqn"][..., None] + EPS)
    return np.log(np.exp(z).sum(axis=2))


def log_spread(f, rho, m, gamma):
    """d1 against the class's own spread shrunk to rho * ||p||^2 with m pseudo-shots."""
    k = f["k"]
    var = (f["spread"] * k + m * rho * f["sqn"]) / np.maximum(k - 1 + m, EPS)  # unbiased per-dim-sum variance
    return np.log(f["d1"] + EPS) - np.log(var * (1 + 1 / k) + EPS) + gamma * np.log(f["C"])


# ---------------------------------------------------------------- fitting helpers


def logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Weighted L2-regularized logistic regression by Newton steps; returns [bias, coefs...]."""
    x = np.column_stack([np.ones(len(x)), x])
    b = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(x @ b, -30, 30)))
        g = x.T @ (w * (p - y)) + l2 * np.r_[0, b[1:]]
        h = (x * (w * p * (1 - p))[:, None]).T @ x + l2 * np.diag(np.r_[0, np.ones(len(b) - 1)])
        step = np.linalg.solve(h, g)
        b -= step
        if np.abs(step).max() < 1e-8:
            break
    return b


def cal_eer(kinds: list[dict], score_fn: Callable) -> tuple[float, float, float]:
    """(EER, balanced tau, strict tau) of score_fn on the calibration kinds (mean of the kinds' curves)."""
    grid, frr, far = error_curves([split(f, score_fn(f)) for f in kinds])
    i = int(np.argmax(frr <= far))
    return float((frr[i] + far[i]) / 2), equal_error_tau(grid, frr, far), tau_at(grid, far, 0.01)


def fit_lr(kinds: list[dict], feats: Callable) -> np.ndarray:
    """Logistic weights on feats(f) [E, T, F], each kind and each side (known / unknown) weighted equally."""
    xs, ys, ws = [], [], []
    for f in kinds:
        x = feats(f)
        xk, xu = x[:, : f["known"]].reshape(-1, x.shape[-1]), x[:, f["known"] :].reshape(-1, x.shape[-1])
        xs += [xk, xu]
        ys += [np.zeros(len(xk)), np.ones(len(xu))]
        ws += [np.full(len(xk), 1 / len(xk)), np.full(len(xu), 1 / len(xu))]
    w = np.concatenate(ws)
    return logistic(np.concatenate(xs), np.concatenate(ys), w / w.mean())


def lr_score(feats: Callable, b: np.ndarray) -> Callable:
    return lambda f: b[0] + feats(f) @ b[1:]


def fit_candidates(kinds: list[dict], beta: float, gamma: float) -> dict[str, tuple[Callable, str]]:
    """name -> (score fn, parameters to store) fitted on the calibration kinds."""
    c: dict[str, tuple[Callable, str]] = {}
    c["v1"] = (lambda f: log_rel(f, beta, gamma), f"beta={beta:.3f} gamma={gamma:.3f}")
    c["log d1/d2"] = (log_ratio, "-")
    c["log d1/dmean"] = (lambda f: np.log((f["d1"] + EPS) / (f["dmean"] + EPS)), "-")
    # softmax temperature: best calibration EER over a grid
    best = min((cal_eer(kinds, lambda f, t=t: softmax_nll(f, t))[0], t) for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2))
    c["softmax nearest"] = (lambda f, t=best[1]: softmax_nll(f, t), f"T={best[1]} * ||p_c||^2")

    def f_v1r(f):
        return np.stack([log_rel(f, beta, gamma), log_ratio(f)], -1)

    b = fit_lr(kinds, f_v1r)
    c["LR v1 + log d1/d2"] = (lr_score(f_v1r, b), "w=" + ",".join(f"{v:.3f}" for v in b))

    def f_4(f):
        return np.stack([np.log((f["d1"] + EPS) / (f["sqn"] + EPS)), log_ratio(f), 1 / f["k"], np.log(f["C"])], -1)

    b = fit_lr(kinds, f_4)
    c["LR log r, log d1/d2, 1/k, log C"] = (lr_score(f_4, b), "w=" + ",".join(f"{v:.3f}" for v in b))

    def f_5(f):
        lr, lq = np.log((f["d1"] + EPS) / (f["sqn"] + EPS)), log_ratio(f)
        return np.stack([lr, lq, 1 / f["k"], np.log(f["C"]), lq / f["k"], lq * np.log(f["C"])], -1)

    b = fit_lr(kinds, f_5)
    c["LR 4 + ratio x (1/k, log C)"] = (lr_score(f_5, b), "w=" + ",".join(f"{v:.3f}" for v in b))

    def f_q(f):
        return np.stack([log_rel(f, beta, gamma), log_ratio(f), np.log((f["qn"] + EPS) / (f["sqn"] + EPS))], -1)

    b = fit_lr(kinds, f_q)
    c["LR v1 + log d1/d2 + log |q|^2/|p|^2"] = (lr_score(f_q, b), "w=" + ",".join(f"{v:.3f}" for v in b))

    if np.isfinite(kinds[0]["dbank"]).all():

        def f_b(f):
            return np.stack([log_rel(f, beta, gamma), log_ratio(f), np.log((f["d1"] + EPS) / (f["dbank"] + EPS))], -1)

        b = fit_lr(kinds, f_b)
        c["LR v1 + log d1/d2 + log d1/dbank"] = (lr_score(f_b, b), "w=" + ",".join(f"{v:.3f}" for v in b))

        def f_b2(f):
            return np.stack([log_rel(f, beta, gamma), np.log((f["d1"] + EPS) / (f["dbank"] + EPS))], -1)

        b = fit_lr(kinds, f_b2)
        c["LR v1 + log d1/dbank"] = (lr_score(f_b2, b), "w=" + ",".join(f"{v:.3f}" for v in b))

    # spread (store needs sum ||x||^2 per class): rho = median spread / ||p||^2 on 5-shot kinds, m by grid
    rho = float(np.median(np.concatenate([(f["spread"] / f["sqn"]).ravel() for f in kinds if f["k"].flat[0] >= 2])))
    rho *= 5 / 4  # unbiased (k = 5)
    best = min((cal_eer(kinds, lambda f, m=m: log_spread(f, rho, m, gamma))[0], m) for m in (0.5, 1, 2, 4, 8, 1e6))
    m = best[1]
    c["spread (shrunk)"] = (lambda f: log_spread(f, rho, m, gamma), f"rho={rho:.4f} m={m:g} gamma={gamma:.3f}")

    def f_sp(f):
        return np.stack([log_spread(f, rho, m, 0.0), log_ratio(f), 1 / f["k"], np.log(f["C"])], -1)

    b = fit_lr(kinds, f_sp)
    c["LR spread, log d1/d2, 1/k, log C"] = (lr_score(f_sp, b), "w=" + ",".join(f"{v:.3f}" for v in b))
    return c


# ---------------------------------------------------------------- main


def build_cache(cache: str, model: EmbeddingModel) -> None:
    """Embed once (CPU, about a minute): {cal,omni,mnist}.npz (q: queries, s: support as enrolled, t),
    {name}_v5.npy (queries with 5 views) and bank.npy (the means of the training classes, as enrolled)."""
    from edgemeta.export.data import load_validation
    from edgemeta.lab.datasets import load_source
    from edgemeta.lab.evaluation import embed_all, embed_all_queries, embed_all_support
    from edgemeta.train.data import held_out_classes

    root, pre, shift = os.environ["EDGEMETA_DATA"], model.meta.preprocess, model.meta.support_shift
    os.makedirs(cache, exist_ok=True)
    val = load_validation({**model.meta.training, "data": f"{root}/omniglot"}, None, None, pre)
    sets = {"cal": (val.images, val.targets)}
    for name, src, sp in (("omni", "omniglot", "evaluation"), ("mnist", "mnist", None)):
        fs = load_source(f"{root}/{src}", pre, split=sp)
        sets[name] = (fs.images, fs.targets)
    for name, (im, t) in sets.items():
        np.savez(f"{cache}/{name}.npz", q=embed_all(model, im), s=embed_all_support(model, im, shift), t=t)
        np.save(f"{cache}/{name}_v5.npy", embed_all_queries(model, im, 5))
    fs = load_source(f"{root}/omniglot", pre, split="background")
    keep = ~held_out_classes(fs, 4, 5)[fs.targets]
    s, t = embed_all_support(model, fs.images[keep], shift), fs.targets[keep]
    np.save(f"{cache}/bank.npy", np.stack([s[t == c].mean(0) for c in np.unique(t)]))


def load(cache: str, name: str, views: int, shift: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached embeddings (``build_cache``)."""
    z = np.load(f"{cache}/{name}.npz")
    q = np.load(f"{cache}/{name}_v5.npy") if views == 5 else z["q"]
    return q.astype(np.float32), (z["s"] if shift else z["q"]).astype(np.float32), z["t"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = EmbeddingModel.default()
    rule = model.meta.rejection
    if not os.path.exists(f"{args.cache}/cal.npz"):
        build_cache(args.cache, model)
    assert model.meta.metric == "sqeuclidean"
    bank = np.load(f"{args.cache}/bank.npy").astype(np.float32) if args.bank else None

    def dbank(q):  # squared distance of every image to its nearest bank prototype
        if bank is None:
            return None
        d = (q * q).sum(1)[:, None] + (bank * bank).sum(1)[None] - 2 * q @ bank.T
        return np.maximum(d, 0).min(1)

    q, s, t = load(args.cache, "cal", args.query_views, not args.no_support_shift)
    db = dbank(q)
    most = int(np.bincount(t).max())
    kinds = []
    for way in CAL_WAYS:
        for shot in CAL_SHOTS:
            spec = EpisodeSpec(way, shot, min(5, most - shot), unknown=way)
            kinds.append(features(q, s, t, spec, args.cal_episodes, np.random.default_rng([args.seed, way, shot]), db))
    beta, gamma = rule.shot_coef, rule.class_coef
    if args.refit:  # beta, gamma refitted as export/threshold.py does (for transformed embeddings)
        from edgemeta.export.threshold import fit_class_coef, fit_shot_coef

        rk = [(int(f["C"].flat[0]), int(f["k"].flat[0]), *split(f, f["d1"] / f["sqn"])) for f in kinds]
        beta = fit_shot_coef(rk)
        gamma = fit_class_coef(rk, beta)
    cands = fit_candidates(kinds, beta, gamma)
    tests = []
    for name, tasks in (("omni", OMNIGLOT_TASKS), ("mnist", MNIST_TASKS)):
        q, s, t = load(args.cache, name, args.query_views, not args.no_support_shift)
        ncls = len(np.unique(t))
        db = dbank(q)
        for way, shot in tasks + ([(1, 1), (1, 5), (2, 1)] if name == "omni" and args.small_c else []):
            spec = EpisodeSpec(way, shot, 15, unknown=way if ncls >= 2 * way else ncls - way)
            tests.append(
                (f"{name} {way}w{shot}s", features(q, s, t, spec, args.episodes, np.random.default_rng(args.seed), db))
            )
    out = {}

    def rich(f):  # everything a score could use; fitted per test row = an upper bound, not a rule
        fin = lambda x: np.where(np.isfinite(x), x, 0.0)  # noqa: E731
        return np.stack(
            [
                log_rel(f, beta, gamma),
                fin(log_ratio(f)),
                fin(np.log((f["d1"] + EPS) / (f["d3"] + EPS))),
                fin(np.log((f["d1"] + EPS) / (f["dmean"] + EPS))),
                np.log((f["qn"] + EPS) / (f["sqn"] + EPS)),
                np.log((f["spread"] + 1e-3 * f["sqn"]) / (f["sqn"] + EPS)),
            ],
            -1,
        )

    orc = {}
    for rname, f in tests:
        b = fit_lr([f], rich)
        orc[rname] = {
            "eer": eer(*split(f, lr_score(rich, b)(f))),
            "frr": float("nan"),
            "far": float("nan"),
            "strict_frr": float("nan"),
            "strict_far": float("nan"),
        }
    out["ORACLE LR rich, fitted on each test row"] = {
        "params": "upper bound",
        "cal_eer": float("nan"),
        "tau_balanced": 0,
        "tau_strict": 0,
        "rows": orc,
    }
    for cname, (fn, params) in cands.items():
        ce, bal, strict = cal_eer(kinds, fn)
        rows = {}
        for rname, f in tests:
            k, u = split(f, fn(f))
            rows[rname] = {
                "eer": eer(k, u) if np.isfinite(k).all() else float("nan"),
                "frr": float((k > bal).mean()),
                "far": float((u <= bal).mean()),
                "strict_frr": float((k > strict).mean()),
                "strict_far": float((u <= strict).mean()),
            }
        out[cname] = {"params": params, "cal_eer": ce, "tau_balanced": bal, "tau_strict": strict, "rows": rows}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--cal-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="/tmp/R", help="folder of cached embeddings (made on first use)")
    p.add_argument("--query-views", type=int, default=1, choices=(1, 5))
    p.add_argument("--no-support-shift", action="store_true")
    p.add_argument("--small-c", action="store_true", help="also Omniglot 1-way and 2-way rows (C = 1, 2)")
    p.add_argument(
        "--bank",
        action="store_true",
        help="also scores using the distance to the nearest of the "
        "training classes' means (a constant bank shipped with the model)",
    )
    p.add_argument("--refit", action="store_true", help="refit v1's beta, gamma on the calibration kinds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return 0
    rnames = list(next(iter(out.values()))["rows"])
    print("| score | cal EER | " + " | ".join(rnames) + " |  (cells: test EER ; balanced FRR/FAR %)")
    for cname, r in out.items():
        cells = [f"{100 * x['eer']:.1f} ; {100 * x['frr']:.1f}/{100 * x['far']:.1f}" for x in r["rows"].values()]
        print(f"| {cname} | {100 * r['cal_eer']:.1f} | " + " | ".join(cells) + " |")
    print()
    for cname, r in out.items():
        print(
            f"{cname}: {r['params']}; strict "
            + " ".join(f"{n}={100 * x['strict_frr']:.1f}/{100 * x['strict_far']:.1f}" for n, x in r["rows"].items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
