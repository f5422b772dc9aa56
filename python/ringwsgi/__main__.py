"""``python -m ringwsgi`` and the ``ringwsgi`` console script.

The same entry serves the master (what the user runs) and the worker process the master starts
(it re-runs this interpreter with the worker's configuration in its environment).
"""

import signal
import sys


def main() -> None:
    # Rust installs the handlers it needs; Python's own SIGINT handler would otherwise turn a
    # Ctrl-C into a KeyboardInterrupt traceback once control returns to Python.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from ringwsgi import _ringwsgi

    sys.exit(_ringwsgi.main(sys.argv, sys.executable))


if __name__ == "__main__":
    main()
