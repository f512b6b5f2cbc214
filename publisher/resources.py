"""Where the bundled templates and sample publication live, installed or in a checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled(installed_name: str, checkout_name: str) -> Path:
    installed = _PACKAGE / installed_name
    return installed if installed.is_dir() else _PACKAGE.parent / checkout_name


def templates_dir() -> Path:
    return _bundled("_templates", "templates")


def sample_dir() -> Path:
    return _bundled("_sample", "sample")


def static_dir(operator_templates: Path | None) -> Path:
    """The web pages' CSS: the operator's `[templates] dir`/web/static if there is one, else ours."""
    own = operator_templates / "web" / "static" if operator_templates else None
    return own if own is not None and own.is_dir() else templates_dir() / "web" / "static"
