"""``mal demo``: train a small model briefly and enhance example audio (what ``make demo`` runs)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a small model for ~100 s and enhance example audio")
    p.add_argument("-o", "--output-dir", default="demo_output", help="where everything is written")
    p.add_argument("--data", help="data folder with the layout of ../shared/data (default: ../shared/data when present)")
    p.add_argument("--train-seconds", type=int, default=100, help="training time budget")
    p.set_defaults(run=run)


def run(args) -> int:
    from mal.demo import run_demo

    res = run_demo(args.output_dir, args.data, args.train_seconds)
    print(f"\ndemo: trained for {res['train_seconds']:.0f} s; checkpoint {res['checkpoint']}")
    for f in res["files"]:
        score = ""
        if "si_sdr_noisy" in f:
            score = f"  (SI-SDR {f['si_sdr_noisy']:.1f} dB -> {f['si_sdr_enhanced']:.1f} dB)"
        print(f"enhanced: {f['enhanced']}{score}")
    print(f"noisy inputs are in {args.output_dir}/noisy; try: mal enhance YOUR.wav -o out --model {res['checkpoint']}")
    return 0
