"""Compiled Jinja templates, shared by the processes of one ansible-playbook run.

ansible-core compiles every template string it renders and keeps nothing, and each task of
each host runs in a fresh fork of ansible-playbook. So every worker compiles the role
defaults it reads (``{{ hadoop_root }}/etc/hadoop``, ``{{ lambda_host_root | default(...)
}}``, ...) again: an 8-host start+stop compiled 92 distinct templates 1,389 times, ~1.2 ms
of CPU each, about a sixth of the controller's CPU (``benchmarks/README.md``).

``install(directory)`` wraps ``jinja2.Environment.compile``: the first process to meet a
template compiles it and stores the code object (``marshal``) in ``directory``; the run's
other processes load it. The key is everything ``compile`` reads: the source, name, file
name and ``defer_init``, the environment's class and lexer and code generator settings, and
ansible-core's backslash-escaping mode. The directory is meant to live as long as one run
(the shim puts it in Ansible's own per-run local temp directory, removed when
ansible-playbook exits), so filters, versions and Python's bytecode format cannot change
under it. Anything unexpected (a file that cannot be read, written or loaded) falls back
to compiling.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import os
import types

import jinja2

# Environment attributes that the lexer, parser or code generator read.
_SETTINGS = (
    "block_start_string", "block_end_string", "variable_start_string",
    "variable_end_string", "comment_start_string", "comment_end_string",
    "line_statement_prefix", "line_comment_prefix", "trim_blocks", "lstrip_blocks",
    "newline_sequence", "keep_trailing_newline", "optimized", "is_async",
)


def _escape_backslashes():
    """ansible-core's compile-time backslash mode (its lexer reads it), None outside it."""
    try:
        from ansible._internal._templating._jinja_bits import _TemplateCompileContext
    except ImportError:  # another ansible-core: its lexer cannot read this either
        return None
    context = _TemplateCompileContext.current(optional=True)
    return None if context is None else context.escape_backslashes


def _name_of(value):
    return getattr(value, "__qualname__", None) or repr(value)


def cache_key(env, source: str, name, filename, defer_init: bool) -> str:
    cls = type(env)
    settings = tuple(getattr(env, attr, None) for attr in _SETTINGS)
    autoescape = env.autoescape if isinstance(env.autoescape, bool) else _name_of(env.autoescape)
    finalize = None if env.finalize is None else _name_of(env.finalize)
    parts = (f"{cls.__module__}.{cls.__qualname__}", source, name, filename, defer_init,
             _escape_backslashes(), settings, autoescape, finalize, tuple(sorted(env.extensions)))
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _load(path: str) -> types.CodeType | None:
    try:
        with open(path, "rb") as stored:
            code = marshal.loads(stored.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None


def _store(path: str, code: types.CodeType) -> None:
    # Write aside, then rename: a process reading concurrently sees all or nothing.
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as stored:
            stored.write(marshal.dumps(code))
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(partial)


def install(directory: str) -> bool:
    """Cache ``jinja2.Environment.compile``'s code objects in ``directory``.

    Returns False when a cache is already installed (this or another directory).
    """
    original = jinja2.Environment.compile
    if getattr(original, "lambda_code_cache", None):
        return False
    os.makedirs(directory, mode=0o700, exist_ok=True)

    @functools.wraps(original)
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if raw or not isinstance(source, str):  # Python source or a parsed tree: as is
            return original(self, source, name, filename, raw, defer_init)
        path = os.path.join(directory, cache_key(self, str(source), name, filename,
                                                 defer_init))
        code = _load(path)
        if code is None:
            code = original(self, source, name, filename, raw, defer_init)
            _store(path, code)
        return code

    compile.lambda_code_cache = directory
    jinja2.Environment.compile = compile
    return True
