"""``surrogate://PATH``: a learned model of how a domain wall answers a tip pulse, served as a backend.

The command line of its three steps, ``python -m learning.surrogate collect|fit|evaluate`` (or
``pfmtwin agent surrogate``), each printing one JSON object:

1. ``collect``: :func:`learning.surrogate_data.collect_transitions` records the wall's answers
   to the pulses ``pfmtwin/DomainWall-v0`` sends for random actions, on any backend URL.
2. ``fit``: :func:`learning.surrogate_fit.fit_surrogate` trains the MLP of
   :mod:`learning.surrogate_model` on them and writes the model file.
3. ``evaluate``: :func:`learning.surrogate_fit.evaluate_surrogate` gives its error on held-out
   transitions next to the no-change baseline, and the environment's speed-up over the source.

:mod:`learning.surrogate_backend` serves a model file as ``surrogate://PATH`` (the ``surrogate``
entry of ``pfmtwin.backends``); it needs the model only, not Gymnasium or the environment. See
docs/decisions/0005-surrogate.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from control.errors import PfmTwinError
from learning.surrogate_data import collect_transitions
from learning.surrogate_fit import evaluate_surrogate, fit_surrogate

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str = "python -m learning.surrogate") -> int:
    """``python -m learning.surrogate collect|fit|evaluate ...`` (or ``pfmtwin agent surrogate``); prints one JSON object."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="record wall responses to random environment pulses")
    c.add_argument("--url", required=True, help="backend URL, e.g. 'twin://?seed=1&grid=64&field=5e-7'")
    c.add_argument("-n", type=int, default=500, help="transitions")
    c.add_argument("--seed", type=int, default=0, help="seed of the random actions")
    c.add_argument("--env-kwargs", type=json.loads, default={}, help="environment keyword arguments as JSON")
    c.add_argument("--episode-steps", type=int, default=40, help="pulses per opened sample")
    c.add_argument("--scans", type=int, default=2, help="scans averaged per wall profile")
    c.add_argument("--out", required=True, help="transitions file to write (.npz)")
    f = sub.add_parser("fit", help="train the model and write the model file")
    f.add_argument("transitions", help="transitions file (.npz)")
    f.add_argument("--out", required=True, help="model file to write (.pt)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, default=300)
    f.add_argument("--holdout", type=float, default=0.2, help="fraction of episodes held out")
    f.add_argument("--no-augment", action="store_true", help="do not add the mirror images of the data in y")
    e = sub.add_parser("evaluate", help="held-out error and speed-up")
    e.add_argument("model", help="model file (.pt)")
    e.add_argument("transitions", help="held-out transitions file (.npz)")
    e.add_argument("--steps", type=int, default=50, help="environment steps timed per backend (0: none)")
    e.add_argument("--twin-url", default=None, help="backend to compare speed with (default: the model's source)")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            data = collect_transitions(args.url, args.n, seed=args.seed, env_kwargs=args.env_kwargs,
                                       episode_steps=args.episode_steps, scans=args.scans, out=args.out, progress=True)
            out: dict[str, Any] = {"out": args.out, "transitions": len(data),
                                   "episodes": int(len(np.unique(data.episode))),
                                   "noise_rms_nm": data.meta["noise_rms"] * 1e9}
        elif args.command == "fit":
            out = fit_surrogate(args.transitions, args.out, seed=args.seed, epochs=args.epochs, holdout=args.holdout,
                                augment=not args.no_augment)
        else:
            out = evaluate_surrogate(args.model, args.transitions, steps=args.steps, twin_url=args.twin_url)
    except PfmTwinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
