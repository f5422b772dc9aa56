"""ringwsgi: a WSGI (PEP 3333) HTTP/1.1 server for Linux.

The server is written in Rust (the ``ringwsgi._ringwsgi`` extension module); this package is only
its front door. Run it as ``ringwsgi module:app`` or ``python -m ringwsgi module:app``.

Apps must not import ``ringwsgi._ringwsgi``: workers run apps in subinterpreters, where the
extension module cannot be loaded.
"""

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``ringwsgi`` command."""
    from ringwsgi.__main__ import main as _main

    _main()
