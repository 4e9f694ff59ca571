"""``python -m benchmarks.independent_sim --out DIR --seed N [--scenario ...] [--small]``: one case."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .case import SCENARIOS, generate_case


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.independent_sim",
                                 description="Write one independently simulated baseline/follow-up case.")
    ap.add_argument("--out", type=Path, required=True,
                    help="case folder (baseline/, followup/, procedure.json, truth.json)")
    ap.add_argument("--seed", type=int, required=True, help="benchmarks use 96000 and up; never tune on them")
    ap.add_argument("--scenario", choices=SCENARIOS, default=None, help="default: drawn from the seed")
    ap.add_argument("--small", action="store_true", help="smaller, coarser volumes and 2 post phases (tests)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    truth = generate_case(args.out, args.seed, args.scenario, small=args.small)
    nod = ", ".join(f"{n['diameter_mm']:.1f} mm {n['shape']} {n['curve']}" for n in truth["nodules"]) or "none"
    print(f"{args.out}: scenario {truth['scenario']}, tumour {truth['tumour']['diameter_mm']:.1f} mm, "
          f"zone {truth['zone']['diameter_mm']:.1f} mm, rim {truth['rim_thickness_mm']:.1f} mm, nodules: {nod}; "
          f"layouts {truth['layouts']['baseline']} > {truth['layouts']['followup']}; "
          f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
