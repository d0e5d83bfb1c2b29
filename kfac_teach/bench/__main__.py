"""``python -m kfac_teach.bench fisher`` | ``python -m kfac_teach.bench train --problem ... --device ...``"""
import importlib
import sys

COMMANDS = {"fisher": "kfac_teach.bench.fisher", "train": "kfac_teach.bench.train"}
USAGE = f"usage: python -m kfac_teach.bench {{{','.join(COMMANDS)}}} [options]  (-h for each)"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        print("\n  fisher  speed of the exact Fisher and of the K-FAC inverses (JSON on stdout)"
              "\n  train   the Sec. 13 autoencoder comparison: K-FAC vs SGD-Nesterov vs Adam (JSON + plot)")
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
