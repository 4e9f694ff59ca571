"""``python -m benchmarks.independent_sim --out DIR --seed N [--scenario ...] [--small]``: one case;
``... --series``: a surveillance series instead."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .case import SCENARIOS, generate_case
from .series import generate_series


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.independent_sim",
                                 description="Write one independently simulated baseline/follow-up case.")
    ap.add_argument("--out", type=Path, required=True,
                    help="case folder (baseline/, followup/, procedure.json, truth.json)")
    ap.add_argument("--seed", type=int, required=True, help="benchmarks use 96000 and up; never tune on them")
    ap.add_argument("--scenario", choices=SCENARIOS, default=None, help="default: drawn from the seed")
    ap.add_argument("--small", action="store_true", help="smaller, coarser volumes and 2 post phases (tests)")
    ap.add_argument("--series", action="store_true",
                    help="a surveillance series (baseline, m01, m06, m12, m24[, m36]); series benchmarks use 99600+")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.series:
        st = generate_series(args.out, args.seed, small=args.small)
        for tp in st["time_points"]:
            print(f"{tp['label']}: zone {tp['ablation_zone']['volume_ml']:.2f} mL, rim "
                  f"{tp['rim']['thickness_mm'] if tp['rim']['present'] else 'absent'}, recurrence "
                  f"{tp['recurrence_size_mm']}, {tp['layout']}")
        print(f"{args.out}: rim fate {st['rim_fate']}; {time.perf_counter() - t0:.1f} s")
        return
    truth = generate_case(args.out, args.seed, args.scenario, small=args.small)
    nod = ", ".join(f"{n['diameter_mm']:.1f} mm {n['shape']} {n['curve']}" for n in truth["nodules"]) or "none"
    print(f"{args.out}: scenario {truth['scenario']}, tumour {truth['tumour']['diameter_mm']:.1f} mm, "
          f"zone {truth['zone']['diameter_mm']:.1f} mm, rim {truth['rim_thickness_mm']:.1f} mm, nodules: {nod}; "
          f"NME: {', '.join(n['kind'] + ' ' + n['distribution'] for n in truth['nme']) or 'none'}; "
          f"tumour at {truth['tumour_location']['clock_face']} o'clock, "
          f"{truth['tumour_location']['distance_from_nipple_mm']:.0f} mm from the nipple; "
          f"layouts {truth['layouts']['baseline']} > {truth['layouts']['followup']}; "
          f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
