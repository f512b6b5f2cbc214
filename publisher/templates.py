"""The one template environment: email (MJML and text), web pages, sign-up mails and the archive.

The operator's `[templates] dir` comes first, then the bundled templates. HTML and MJML templates
are autoescaped; text templates are not. Errors name the template and line.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping

import css_inline
import jinja2
import jinja2.meta
import mjml

from publisher import i18n
from publisher.config import Settings
from publisher.errors import TemplateError
from publisher.resources import templates_dir

MJML_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
        "mj-include",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    }
)
_MJ_TAG = re.compile(r"<\s*/?\s*(mj-[A-Za-z0-9_-]+|mjml)\b")


def environment(settings: Settings) -> jinja2.Environment:
    """The operator's template folder first (when set), then the bundled templates."""
    folders = [settings.templates.dir] if settings.templates.dir else []
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in [*folders, templates_dir()]])
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "mjml", "html.j2", "mjml.j2"], default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # `_()` and `ngettext()` in templates speak `site.language` (publisher.i18n)
    env.install_gettext_translations(i18n.translations(settings.site.language), newstyle=True)  # type: ignore[attr-defined]
    return env


def _location(error: Exception, fallback: str) -> str:
    """`file:line` of the template frame an error was raised in (Jinja rewrites tracebacks so)."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"{error.filename or error.name or fallback}:{error.lineno}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.endswith(".j2") or frame.filename == "<template>":
            name = fallback if frame.filename == "<template>" else frame.filename
            return f"{name}:{frame.lineno}"
    return fallback


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, object]) -> str:
    """Render one template file, turning any Jinja error into a TemplateError naming file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as error:
        raise TemplateError(f"template {error.name} not found in {_folders(env)}") from None
    except jinja2.TemplateError as error:
        where = _location(error, name)
        message = error.message if isinstance(error, jinja2.TemplateSyntaxError) else str(error)
        raise TemplateError(f"{where}: {message}") from None


def render_string(source: str, context: Mapping[str, object], where: str) -> str:
    """Render a one-line template from config (subject, preheader), naming the key on errors."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - a header line, not HTML
    try:
        return env.from_string(source).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{where}: {error.message} (line {error.lineno})") from None
    except jinja2.TemplateError as error:
        raise TemplateError(f"{where}: {error}") from None


def _folders(env: jinja2.Environment) -> str:
    loaders = getattr(env.loader, "loaders", [env.loader])
    return ", ".join(str(path) for loader in loaders for path in getattr(loader, "searchpath", []))


def _sources(env: jinja2.Environment, name: str) -> list[tuple[str, str]]:
    """(filename, source) of a template and every template it includes, extends or imports."""
    found: list[tuple[str, str]] = []
    pending, seen = [name], set()
    if env.loader is None:
        raise TemplateError(f"{name}: the template environment has no loader")
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        source, filename, _ = env.loader.get_source(env, current)
        found.append((filename or current, source))
        pending.extend(n for n in jinja2.meta.find_referenced_templates(env.parse(source)) if n)
    return found


def check_mjml_tags(env: jinja2.Environment, name: str, rendered: str) -> None:
    """mjml-python passes unknown mj-* tags through silently; refuse them, naming file and line."""
    unknown = sorted({tag for tag in _MJ_TAG.findall(rendered) if tag.lower() not in MJML_TAGS})
    if not unknown:
        return
    tag = unknown[0]
    for filename, source in _sources(env, name):
        for number, line in enumerate(source.splitlines(), start=1):
            if re.search(rf"<\s*/?\s*{re.escape(tag)}\b", line):
                raise TemplateError(
                    f"{filename}:{number}: unknown MJML tag <{tag}> (check the spelling; "
                    f"see https://documentation.mjml.io for the tags MJML knows)"
                )
    at = rendered[: rendered.find(tag)].count("\n") + 1
    raise TemplateError(f"{name}: unknown MJML tag <{tag}> at line {at} of the rendered MJML")


def compile_mjml(source: str, name: str) -> str:
    """MJML → HTML with every <style> rule also inlined (media queries stay in the <style> tags)."""
    try:
        compiled = mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as error:
        raise TemplateError(f"{name}: the rendered MJML is not valid: {error}") from None
    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    try:
        return inliner.inline(compiled)
    except css_inline.InlineError as error:
        raise TemplateError(f"{name}: cannot inline its CSS: {error}") from None
