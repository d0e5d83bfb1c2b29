"""``python -m kfac_teach.bench fisher`` | ``python -m kfac_teach.bench train --problem ... --device ...``"""
import importlib
import sys

COMMANDS = {"fisher": "kfac_teach.bench.fisher", "train": "kfac_teach.bench.train"}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m kfac_teach.bench {{{','.join(COMMANDS)}}} [options]  (-h for each)")
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
