"""The per-run cache of compiled Jinja templates (api/adapters/ansible_plugins)."""

from __future__ import annotations

import importlib.util
import shutil

import jinja2
import pytest

from api.adapters.ansible import STRATEGY_PLUGINS_DIR

MODULE = f"{STRATEGY_PLUGINS_DIR}/../jinja_code_cache.py"


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """The module, installed over a counting compile; jinja2 is restored after the test."""
    spec = importlib.util.spec_from_file_location("jinja_code_cache_under_test", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = jinja2.Environment.compile
    compiled = []

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(source)
        return original(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    directory = tmp_path / "jinja-code"
    assert module.install(str(directory)) is True
    module.compiled, module.directory = compiled, directory
    return module


def render(source: str, env: jinja2.Environment | None = None, **values) -> str:
    return (env or jinja2.Environment()).from_string(source).render(**values)


def test_a_template_is_compiled_once_and_then_loaded(cache):
    source = "{{ root }}/etc/{{ name | upper }}"
    assert render(source, root="/opt", name="hadoop") == "/opt/etc/HADOOP"
    assert cache.compiled.count(source) == 1

    # A new environment, as a new worker process builds: loaded from the file.
    assert render(source, root="/srv", name="kafka") == "/srv/etc/KAFKA"
    assert cache.compiled.count(source) == 1


def test_settings_that_change_the_compiled_code_change_the_key(cache):
    source = "{% if on %}\n  yes\n{% endif %}"
    plain = render(source, on=True)
    trimmed = render(source, jinja2.Environment(trim_blocks=True, lstrip_blocks=True), on=True)
    other_delimiters = render("<< on >>", jinja2.Environment(variable_start_string="<<",
                                                             variable_end_string=">>"), on=1)

    assert (plain, trimmed, other_delimiters) == ("\n  yes\n", "  yes\n", "1")
    assert cache.compiled.count(source) == 2


def test_ansibles_backslash_mode_is_part_of_the_key(cache):
    from ansible._internal._templating._jinja_bits import _TemplateCompileContext

    def key():
        return cache.cache_key(jinja2.Environment(), "{{ 'a\\tb' }}", None, None, False)

    outside = key()
    with _TemplateCompileContext(escape_backslashes=True):
        escaping = key()
    with _TemplateCompileContext(escape_backslashes=False):
        not_escaping = key()
    assert len({outside, escaping, not_escaping}) == 3


def test_a_damaged_file_is_compiled_again(cache):
    source = "{{ 1 + 1 }}"
    assert render(source) == "2"
    (stored,) = cache.directory.iterdir()
    stored.write_bytes(b"not marshal data")

    assert render(source) == "2"
    assert cache.compiled.count(source) == 2
    assert render(source) == "2"  # and stored again
    assert cache.compiled.count(source) == 2


def test_a_directory_that_is_gone_only_costs_the_cache(cache):
    shutil.rmtree(cache.directory)
    assert render("{{ 'still' }} works") == "still works"
    assert render("{{ 'still' }} works") == "still works"
    assert cache.compiled.count("{{ 'still' }} works") == 2


def test_syntax_errors_are_raised_and_not_stored(cache):
    with pytest.raises(jinja2.TemplateSyntaxError):
        render("{{ unclosed ")
    assert list(cache.directory.iterdir()) == []


def test_python_source_and_parsed_trees_pass_through(cache):
    env = jinja2.Environment()
    assert isinstance(env.compile("{{ x }}", raw=True), str)
    assert env.compile_expression("x + 1")(x=1) == 2  # compiles a parsed tree
    assert list(cache.directory.iterdir()) == []


def test_a_second_install_is_refused(cache, tmp_path):
    assert cache.install(str(tmp_path / "other")) is False
    assert not (tmp_path / "other").exists()


def test_ansible_templating_gives_the_same_results_through_the_cache(cache):
    from ansible.template import Templar, trust_as_template

    values = {"root": "/opt/lambda", "conf": trust_as_template("{{ root }}/etc/hadoop"),
              "escaped": trust_as_template("{{ 'a\\tb' }}"), "hosts": ["m", "s1"]}
    sources = [trust_as_template(v) for v in ("{{ conf }}", "{{ escaped }}",
                                              "{{ hosts | join(',') }}")]
    first = [Templar(loader=None, variables=values).template(v) for v in sources]
    again = [Templar(loader=None, variables=values).template(v) for v in sources]

    assert first == again == ["/opt/lambda/etc/hadoop", "a\\tb", "m,s1"]
    assert cache.compiled.count("{{ root }}/etc/hadoop") == 1  # the second Templar loaded it
