"""Run by ringwsgi in each worker interpreter (never imported from the ringwsgi package: the
native extension cannot be loaded inside a subinterpreter). Holds the pieces of the WSGI glue that
are simplest in Python: loading the app, wsgi.file_wrapper, formatting tracebacks."""

import ast
import importlib
import sys
import traceback


class LoadError(Exception):
    """The app could not be loaded; the message is shown to the user as one line."""


def _where(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


def _resolve(module, expr, spec):
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise LoadError(f"invalid app '{spec}': expected MODULE:APP or MODULE:FACTORY()") from None
    call = None
    if isinstance(node, ast.Call):
        call, node = node, node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise LoadError(f"invalid app '{spec}': expected MODULE:APP or MODULE:FACTORY()")
    names.append(node.id)
    obj = module
    for name in reversed(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise LoadError(f"cannot find '{expr}' in module '{module.__name__}'") from None
    if call is not None:
        try:
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except ValueError:
            raise LoadError(f"invalid app '{spec}': factory arguments must be literals") from None
        try:
            obj = obj(*args, **kwargs)
        except Exception as e:
            raise LoadError(
                f"the app factory '{expr}' raised {type(e).__name__}: {e}{_where(e)}"
            ) from None
    if not callable(obj):
        raise LoadError(f"'{spec}' is not callable (got {type(obj).__name__})")
    return obj


def load_app(spec, paths):
    """Imports MODULE and returns APP (or calls FACTORY()) for spec 'MODULE:APP'. Loaded once per
    interpreter: the --threads pool's threads get the app the worker loaded (a factory is called
    once). A LoadError caused by an extension module refusing subinterpreters names that module's
    package in its `refused_by` attribute (None otherwise)."""
    loaded = getattr(sys, "_ringwsgi_apps", None)
    if loaded is None:
        loaded = sys._ringwsgi_apps = {}
    if spec in loaded:
        return loaded[spec]
    with _NamingRefusals():
        try:
            app = _load_app(spec, paths)
        except LoadError as e:
            e.refused_by = _refusing_package(e)
            raise
    loaded[spec] = app
    return app


# The ImportErrors of extension modules that cannot be loaded in a subinterpreter: CPython's
# (single-phase init modules) and PyO3's.
_REFUSALS = (
    "does not support loading in subinterpreters",
    "PyO3 modules do not yet support subinterpreters",
)


def _refusal(exc):
    """The ImportError in exc's chain that is a refusal of subinterpreters, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError) and any(r in str(exc) for r in _REFUSALS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _refusing_package(exc):
    refusal = _refusal(exc)
    if refusal is None:
        return None
    name = getattr(refusal, "_ringwsgi_module", None)
    if name is None:
        # CPython's message names the module: "module X does not support loading in ...".
        words = str(refusal).split()
        name = words[1] if len(words) > 1 and words[0] == "module" else "an extension module"
    return name.split(".")[0]


class _NamingRefusals:
    """While the app loads, notes on a refusal which extension module it came from (PyO3's
    message does not say)."""

    def __enter__(self):
        from importlib.machinery import ExtensionFileLoader

        self.loader = ExtensionFileLoader
        self.original = original = ExtensionFileLoader.create_module

        def create_module(loader, spec):
            try:
                return original(loader, spec)
            except ImportError as e:
                if _refusal(e) is e and not hasattr(e, "_ringwsgi_module"):
                    e._ringwsgi_module = spec.name
                raise

        ExtensionFileLoader.create_module = create_module

    def __exit__(self, *exc):
        self.loader.create_module = self.original


def _load_app(spec, paths):
    for path in reversed(paths):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    module_name, _, expr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise LoadError(f"cannot find module '{module_name}' (sys.path: {paths})") from None
        raise LoadError(f"error while importing '{module_name}': {type(e).__name__}: {e}{_where(e)}") from None
    except BaseException as e:
        raise LoadError(
            f"error while importing '{module_name}': {type(e).__name__}: {e}{_where(e)}"
        ) from None
    return _resolve(module, expr, spec)


def format_exception(exc):
    """The traceback of exc as text, for the server's log (with what to do when an extension
    module imported inside a request refused subinterpreters)."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    if _refusal(exc) is not None:
        text += "\n(an extension module refuses subinterpreters: run ringwsgi with --mode process)"
    return text


class FileWrapper:
    """wsgi.file_wrapper: the server sends a real file straight from its descriptor
    (zero-copy); any other file-like object is read in blocks through iteration."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


# One class per interpreter: --threads pool threads run this module again (in place).
if "RequestTimeout" not in globals():

    class RequestTimeout(BaseException):
        """Raised by ringwsgi in an app call that ran longer than --timeout. A BaseException
        (like KeyboardInterrupt), so that an app's `except Exception:` does not swallow it."""

        def __init__(self, *args):
            super().__init__(*(args or ("the app call ran longer than --timeout",)))

    RequestTimeout.__module__ = "ringwsgi"
