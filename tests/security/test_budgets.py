"""Per-recipient budgets hold against templates written to exhaust them.

Each hostile template builds its value into a `{% set %}` that is never written, so
the output limit cannot be what stops it: the budget on what a template builds (and
the checks before a filter, method or operator that would multiply its input) must.
Every case runs `newsletter check` in its own process with its address space capped,
and must end quickly, exit 2, name the template's file and line and the recipient,
and stay within a few hundred MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from newsletter.inputs.settings import KNOWN_SETTINGS
from newsletter.render.renderer import make_environment
from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, serve

ADDRESS_SPACE = 768 * 1024 * 1024  # the child's cap: the old code hit it, or ran for many seconds
PEAK_RSS_KIB = 300 * 1024
SECONDS = 10.0

# Runs the CLI as `python -m newsletter` does, under an address-space cap, and reports its peak RSS.
CHILD = """
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_KIB " + line.split()[1] + "\\n")
atexit.register(peak)
sys.argv = ["newsletter", *sys.argv[1:]]
import runpy
runpy.run_module("newsletter", run_name="__main__")
"""

DOUBLING = "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 40
MACRO_HOLDS = "{% macro f(n) %}{% set s = 'x' * 9000000 %}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}"
NESTED = "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}"
LONG_LIST = "{% set l = ['x' * 5000000] * 1000 %}"

CASES = {
    # The finding's cases.
    "tilde-doubling": (DOUBLING + "{{ s|length }}", "'~' would build about"),
    "wordwrap-long-text": ("{% set x = ('a- ' * 400000)|wordwrap(1) %}", "'wordwrap' takes at most 100,000 characters"),
    "wordwrap-wrapstring": (
        "{% set x = ('a ' * 40000)|wordwrap(1, wrapstring='x' * 100000) %}",
        "the filter 'wordwrap' would build about",
    ),
    "lipsum": ("{% set x = lipsum(1000, max=10000) %}", "lipsum() may write at most 100,000 words"),
    "center": ("{% set x = 'x'|center(10**9) %}", "the filter 'center' would build about 1,000,000,000"),
    "indent": ("{% set x = ('a\\n' * 100000)|indent(100000) %}", "the filter 'indent' would build about"),
    "format-star": ("{% set x = '%*d'|format(10**9, 1) %}", "the filter 'format' would build about"),
    "repeat-held-in-macros": (MACRO_HOLDS + "{% set x = f(100) %}", "grew past 30,000,000 characters"),
    # Found on the way.
    "percent-star": ("{% set x = '%*d' % (10**9, 1) %}", "'%' formatting would build about"),
    "percent-width": ("{% set x = '%0999999999d' % 1 %}", "'%' formatting would build about"),
    "str-format-width": ("{% set x = '{:>{}}'.format(1, 999999999) %}", "str.format() would build about"),
    "str-center": ("{% set x = 'x'.center(10**9) %}", "str.center() would build about"),
    "replace": ("{% set x = ('x' * 1000)|replace('x', 'y' * 100000) %}", "the filter 'replace' would build about"),
    "join": (LONG_LIST + "{% set x = l|join %}", "the filter 'join' would build about"),
    "plus-doubling": ("{% set s = 'ab' %}" + "{% set s = s + s %}" * 40, "'+' would build about"),
    "string-of-a-list": (LONG_LIST + "{% set x = l|string %}", "the filter 'string' would build about"),
    "written-list": (LONG_LIST + "{{ l }}", "writing this value would build about"),
    "written-list-in-a-block": (LONG_LIST + "{% set x %}{{ l }}{% endset %}", "writing this value would build about"),
    "nested-tojson": (NESTED + "{% set x = ns.a|tojson %}", "the filter 'tojson' would build about"),
    "urlize": ("{% set x = ('a. ' * 1000000)|urlize %}", "'urlize' takes at most 100,000 characters"),
    "macro-doubling": (
        "{% macro m(n, s) %}{% if n %}{{ m(n - 1, s) }}{{ m(n - 1, s) }}{% else %}{{ s }}{% endif %}{% endmacro %}"
        "{% set x = m(40, 'x' * 100000) %}",
        "a macro or block would build about",
    ),
    "set-block": (
        "{% set s = 'x' * 10**7 %}{% set x %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}",
        "grew past 30,000,000 characters",  # each `{{ s }}` is escaped into the block's list
    ),
    "sum-of-lists": ("{% set x = ([[1] * 1000] * 1000)|sum(start=[]) %}", "the filter 'sum' would build about"),
    "slice": ("{% set x = range(10)|slice(10**8)|list %}", "the filter 'slice' would build about"),
    "split": ("{% set x = ('a ' * 5000000).split() %}", "str.split() would build about"),
    "translate": ("{% set x = ('x' * 100).translate({120: 'y' * 10**7}) %}", "str.translate() would build about"),
    "int-product": (
        "{% set ns = namespace(n=2 ** 30000) %}{% for i in range(30) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
        "too large a number",
    ),
}


def _check_in_a_capped_process(folder: Path) -> tuple[subprocess.CompletedProcess[str], float, int]:
    env = {k: v for k, v in os.environ.items() if k not in KNOWN_SETTINGS}
    env["COLUMNS"] = "250"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(limit=ADDRESS_SPACE), "--campaign", str(folder), "check"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    peaks = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_KIB ")]
    return result, elapsed, peaks[-1] if peaks else 0


@pytest.mark.parametrize(("template", "expected"), CASES.values(), ids=CASES.keys())
def test_a_budget_bypass_is_stopped_quickly_with_file_line_and_recipient(
    tmp_path: Path, template: str, expected: str
) -> None:
    folder = make_campaign(tmp_path / "c", html=f"<p>a</p>\n{template}<p>b</p>")
    result, elapsed, peak_kib = _check_in_a_capped_process(folder)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "announcement.html:2:" in output and expected in output, output
    assert "(rendering for ann@example.org, recipients line 2)" in output, output
    assert "Traceback" not in output and "MemoryError" not in output, output
    assert elapsed < SECONDS, f"{elapsed:.1f} s"
    assert 0 < peak_kib < PEAK_RSS_KIB, f"peak RSS {peak_kib // 1024} MB"


def test_send_stops_before_anything_is_sent(tmp_path: Path) -> None:
    """A template that only takes long: the old code sent it; now `check` and `send` exit 2."""
    folder = make_campaign(tmp_path / "c", html="<p>a</p>\n{% set x = lipsum(200, max=1000) %}<p>b</p>")
    with serve() as server:
        write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})
        checked = cli(folder, "check")
        sent = cli(folder, "send", "--yes")
    for result in (checked, sent):
        assert result.exit_code == 2, result.output
        assert "announcement.html:2: TemplateBudgetExceeded: lipsum() may write at most 100,000 words" in result.output
    assert "rendering for ann@example.org" in sent.output
    assert server.recorder.mail_commands == 0 and server.messages == []


ORDINARY = [
    "{{ 'a' ~ 1 ~ none ~ [1, 'b'] ~ {'k': 'v'} }}",
    "{{ 'x'|center(20) }}|{{ 'a\\nb'|indent(3, true) }}|{{ '%5.2f and %s'|format(3.14159, 'pi') }}",
    "{{ '%-6s|%*d' % ('ab', 4, 7) }}|{{ '%(a)s' % {'a': 1} }}|{{ '{0:>8}|{1!r}|{0}'.format('r', 'q') }}",
    "{{ [1, 2, 3]|join(', ') }}|{{ ('a', 'b')|join }}|{{ range(4)|map('string')|join('-') }}",
    "{{ 'a-b c'|replace('-', '--') }}|{{ 'a b c'.split() }}|{{ ', '.join(['x', 'y']) }}|{{ 'ab'.zfill(5) }}",
    "{{ ('word ' * 30)|wordwrap(20) }}|{{ 'see https://example.org now'|urlize }}|{{ 'abc'|truncate(3, end='') }}",
    "{{ [[1], [2]]|sum(start=[]) }}|{{ range(7)|slice(3)|list }}|{{ range(5)|batch(2, 0)|list }}|{{ 2 * 3 }}",
    "{{ [1, 2] + [3] }}|{{ 'ab' + 'cd' }}|{{ [0] * 3 }}|{{ 'ab' * 3 }}|{{ {'a': [1, {'b': 'c'}]} }}|{{ 7 % 3 }}",
    "{% set ns = namespace(t='') %}{% for i in range(5) %}{% set ns.t = ns.t ~ i %}{% endfor %}{{ ns.t }}{{ ns }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('a&b') }}{% macro c() %}[{{ caller() }}]{% endmacro %}"
    "{% call c() %}in{% endcall %}{% set b %}{{ [1, 2] }}{{ '<i>' }}{% endset %}{{ b }}",
    "{% filter upper %}{{ 'a' }}{{ 1 }}{% endfilter %}{{ 'x'|e }}{{ '<b>'|safe }}{{ {'a': 1}|tojson }}",
    "{{ 'é<'|format() }}{{ '{}'.format('<a>') }}{{ ('%s' % '<')|length }}{{ 'a\\tb'.expandtabs(4) }}",
]


@pytest.mark.parametrize("autoescape", [False, True])
@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_templates_render_as_in_jinjas_sandbox(tmp_path: Path, source: str, autoescape: bool) -> None:
    """The budgets change nothing a normal template writes, with or without autoescape."""
    plain = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=autoescape)
    budgeted = make_environment(tmp_path, autoescape=autoescape)
    assert budgeted.from_string(source).render() == plain.from_string(source).render()


def test_the_example_campaign_renders_unchanged_under_the_budgets(tmp_path: Path) -> None:
    """The repository's own campaign passes `check` with the budgets on."""
    root = Path(__file__).resolve().parents[2]
    result = cli(root, "--recipients", str(root / "recipients.example.csv"), "check")
    assert result.exit_code == 0, result.output
    assert "TemplateBudgetExceeded" not in result.output
