"""Articles in the console: list and search, one article with the issues it went into, and an
import of the configured sources."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher.console.auth import Console, audited
from publisher.console.pages import page_number, redirect, render
from publisher.links import article_url
from publisher.publication import Publication

PAGE = 50


def _publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


async def index(request: Request, console: Console) -> Response:
    text = request.query_params.get("q", "")[:200]
    page = page_number(request)
    found, total = await run_in_threadpool(
        _publication(request).find_articles, text, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    return render(
        request,
        "articles",
        found=found,
        total=total,
        q=text,
        page=page,
        pages=max(1, -(-total // PAGE)),
        sources=_publication(request).settings.sources,
    )


async def detail(request: Request, console: Console) -> Response:
    publication = _publication(request)
    article, issues = await run_in_threadpool(publication.article, request.path_params["slug"])
    return render(
        request, "article", article=article, issues=issues, url=article_url(article, publication.settings.site.url)
    )


async def import_sources(request: Request, console: Console) -> Response:
    result = await audited(request, console, "articles.import", {}, _publication(request).import_sources)
    added = sum(len(report.added) for report in result.reports)
    updated = sum(len(report.updated) for report in result.reports)
    return redirect(
        request,
        "/admin/articles/",
        f"Imported {len(result.reports)} source(s): {added} added, {updated} updated; "
        f"{result.articles} articles in all.",
    )
