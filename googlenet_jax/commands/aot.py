"""Compiles the trainer's train and eval steps for a TPU slice, without a TPU:
`python -m googlenet_jax.aot --config CONFIG --topology NAME [--config.FIELD=VALUE ...]
[--max_batch] [--json OUT]`.

The steps are the ones `train.py --config.parallel=mesh` runs for CONFIG (same model, optimizer,
schedule and shardings, googlenet_jax/training/programs.py), compiled by libtpu's XLA for every
chip of the slice NAME (e.g. v5e:2x2, v4:2x2x1, v5p:4x4x4) from abstract inputs: no data, no
weights, no TPU. Per chip and step it reports memory against the chip's HBM, FLOPs, the
collectives in the compiled program, XLA's own time estimate and the compile time; --max_batch
also searches the largest per-chip batch whose train step fits. `--json OUT` writes the report.

Exit status: 0 both steps fit, 1 one does not (one line says what it needs and what there is),
2 bad arguments (unknown topology, a batch that does not divide over the chips, a bad config,
libtpu not installed).
"""
from __future__ import annotations

import json
import sys

from googlenet_jax.commands import common


def parse_args(argv=None):
    parser = common.ArgumentParser("aot", __doc__, description=" ".join(__doc__.split("\n\n")[:2]),
                                   epilog="Exit status: 0 fits, 1 does not fit, 2 bad arguments.")
    parser.add_argument("--config", required=True, metavar="CONFIG", help="a training config file (configs/*.py)")
    parser.add_argument("--topology", required=True, metavar="NAME",
                        help="a TPU slice as libtpu names it: v5e:2x2, v4:2x2x1, v5p:4x4x4, v6e:16x16 ...")
    parser.add_argument("--max_batch", action="store_true",
                        help="also find the largest per-chip batch whose train step fits (a few more compiles)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    args, rest = parser.parse_known_args(argv)
    args.overrides = common.config_overrides(parser, rest)
    parser.check_output_folder("--json", args.json)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from googlenet_jax.training import tpu_compile, tpu_fit  # the standard library only until it compiles

        config = common.load_config(args.config, args.overrides, "aot")
        tpu_compile.prepare_libtpu()
        tpu = tpu_compile.open_slice(args.topology)
        if config.parallel != "mesh":
            print(f"note: config.parallel={config.parallel!r}; compiling what train.py runs with "
                  "--config.parallel=mesh (the multi-host path)", file=sys.stderr)
        result = tpu_fit.check(config, tpu, max_batch=args.max_batch, log=lambda line: print(line, file=sys.stderr))
        result.report["config"] = args.config
        print(tpu_fit.format_report(result.report, len(tpu.devices)), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result.report, f, indent=2)
        problem = tpu_fit.verdict(result.report)
        if problem:
            print(f"aot: {problem}", file=sys.stderr, flush=True)
            return common.EXIT_CHECK_FAILED
        return common.EXIT_OK

    return common.run("aot", body)


if __name__ == "__main__":
    sys.exit(main())
