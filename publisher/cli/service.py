"""`publisher schedule`, `publisher publish`, `publisher run` and `publisher worker`: the service."""

from __future__ import annotations

import logging
import signal
import threading

import click

from publisher import logs
from publisher.cli.app import App, log_format_option, plural, print_json
from publisher.config import check_imap_password
from publisher.publication import Publication


def configure_logging(verbose: bool = False, fmt: str = "text") -> None:
    """Log to stderr as text lines or, with `--log-format json`, one JSON object a line."""
    logs.configure(fmt, verbose=verbose)


@click.command("schedule")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of jobs.")
@click.pass_obj
def schedule_command(app: App, as_json: bool) -> None:
    """List the timetable's jobs with their next fire times (local and UTC), then the one-off
    jobs: approved issues and announcements waiting for their time, the next scheduled article."""
    rows = app.publication.schedule()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        local = row["next_run"] or "never"
        if row.get("slot_local"):  # a local-time newsletter: the wall-clock time each zone gets
            local = f"{row['slot_local']} local time"
        zoned = row["kind"] in ("newsletter", "send") and row["next_run_utc"]
        utc = f" ({row['next_run_utc']} UTC)" if zoned else ""
        click.echo(f"{row['id']:<24} next {local}{utc}  {row['description']}")
        waves: list = row.get("waves", [])  # type: ignore[assignment]
        sending: list = row.get("sending_waves", [])  # type: ignore[assignment]
        for wave in waves:
            readers = plural(wave["readers"], "reader")
            click.echo(f"{'':<24}   wave {wave['zone']:<22} {wave['local']} ({wave['utc']} UTC)  {readers}")
        for wave in sending:
            due = f"{wave['due']} UTC" if wave["due"] else "now"
            zones = ", ".join(wave["zones"]) or "?"
            click.echo(
                f"{'':<24}   issue {wave['issue']} wave {zones} {wave['local']} ({due}): "
                f"{wave['left']} of {plural(wave['readers'], 'reader')} left"
            )


@click.command("publish")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def publish_command(app: App, as_json: bool) -> None:
    """Do everything that is due now, once: import, feeds, due issues, retries.

    A newsletter's latest slot is sent if it fell within its grace time and has not been
    handled; run this from cron instead of `publisher run` if you prefer.
    """
    configure_logging()
    report = app.publication.publish_due()
    if as_json:
        print_json(
            {
                "imported": report.imported,
                "feeds_changed": report.feeds_changed,
                "slots": [
                    {
                        "newsletter": s.newsletter,
                        "slot": s.slot.isoformat() if s.slot else None,
                        "outcome": s.outcome,
                        "detail": s.detail,
                        "issue": s.issue.number if s.issue else None,
                    }
                    for s in report.slots
                ],
                "sent": report.sent,
                "retried": report.retried,
            }
        )
        return
    for line in report.imported:
        click.echo(f"imported {line}")
    click.echo(f"feeds: {report.feeds_changed} files changed")
    for line in report.sent:
        click.echo(f"sent {line}")
    for slot in report.slots:
        when = slot.slot.isoformat() if slot.slot else "no recent slot"
        click.echo(f"{slot.newsletter}: {when}: {slot.outcome}{': ' + slot.detail if slot.detail else ''}")


class WebThread:
    """The web app (and `[metrics] listen`'s server) under uvicorn in background threads, stopped
    gracefully on request."""

    def __init__(self, publication: Publication, log_format: str = "text") -> None:
        from publisher.web import ServerThread, check_address, make_metrics_server, make_server

        settings = publication.settings
        server = make_server(publication, log_level="warning", access_log=False, log_format=log_format)
        check_address(server.config.host, server.config.port)
        extra = make_metrics_server(server, log_format=log_format)
        if extra is not None:
            check_address(extra.config.host, extra.config.port, "[metrics] listen")
        self.threads = [ServerThread(found, name) for found, name in ((server, "web"), (extra, "metrics")) if found]
        logging.getLogger("publisher.web").info("serving http://%s:%d/", settings.web.host, settings.web.port)

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()


def run_service(app: App, *, web: bool, scheduler: bool, log_format: str = "text") -> None:
    """Scheduler and web app in one process until SIGTERM or SIGINT."""
    # imported here, not at the top: every other command starts faster without APScheduler and aiosmtpd
    from publisher.inbound.listener import Listener
    from publisher.scheduler import Scheduler

    if not web and not scheduler:
        raise click.UsageError("--no-web and --no-scheduler together leave nothing to run")
    configure_logging(fmt=log_format)
    app.warn_about_settings()
    if scheduler:
        check_imap_password(app.settings)  # before anything starts, not at the first poll's login

    settings, store = app.settings, app.store
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("publisher").info("received %s; finishing the work in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = WebThread(app.publication, log_format) if web else None
    listener = Listener(settings, store).start() if settings.inbound.listen else None
    try:
        if scheduler:
            Scheduler(settings, store, embedded=app.embedded).serve(stop)
        else:
            stop.wait()
    finally:
        if listener is not None:
            listener.stop()
        if server is not None:
            server.stop()
        store.close()


@click.command("run")
@click.option("--no-web", is_flag=True, help="Run only the scheduler.")
@click.option("--no-scheduler", is_flag=True, help="Run only the web app.")
@log_format_option
@click.pass_obj
def run_command(app: App, no_web: bool, no_scheduler: bool, log_format: str) -> None:
    """Run the timetable and the web app until stopped (SIGTERM or Ctrl-C).

    Only one scheduler is active per database; a second `publisher run` waits as a standby
    and takes over when the first stops or dies.
    """
    run_service(app, web=not no_web, scheduler=not no_scheduler, log_format=log_format)


def register(group: click.Group) -> None:
    for command in (schedule_command, publish_command, run_command, worker_command):
        group.add_command(command)


@click.command("worker")
@click.option(
    "--poll", default=1.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between looks for work."
)
@click.pass_obj
def worker_command(app: App, poll: float) -> None:
    """Deliver only: send every issue that is sending or due for retry, until stopped.

    No timetable and no web app. Start one on each sending host against the same PostgreSQL
    database (next to one `publisher run`); they share each issue's recipients, and take over
    the rows of a worker that dies at once. SIGTERM or Ctrl-C finishes the messages on the wire.
    """
    from publisher import worker

    configure_logging()
    app.warn_about_settings()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("publisher").info(
            "received %s; finishing the messages on the wire", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.serve(app.publication, stop, poll)
    finally:
        app.store.close()
