"""`publisher schedule`, `publisher publish`, `publisher run` and `publisher worker`: the service."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from publisher.cli.app import App, print_json
from publisher.publication import Publication

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    # APScheduler logs every job start at INFO; our own lines say what each job did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@click.command("schedule")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of jobs.")
@click.pass_obj
def schedule_command(app: App, as_json: bool) -> None:
    """List the timetable's jobs with their next fire times (local and UTC)."""
    rows = app.publication.schedule()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        local = row["next_run"] or "never"
        utc = f" ({row['next_run_utc']} UTC)" if row["kind"] == "newsletter" and row["next_run_utc"] else ""
        click.echo(f"{row['id']:<24} next {local}{utc}  {row['description']}")


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
    """The web app under uvicorn in a background thread, stopped gracefully on request."""

    def __init__(self, publication: Publication) -> None:
        from publisher.web import check_address, make_server

        settings = publication.settings
        self.server = make_server(publication, log_level="warning", access_log=False)
        check_address(self.server.config.host, self.server.config.port)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)
        self.thread.start()
        logging.getLogger("publisher.web").info("serving http://%s:%d/", settings.web.host, settings.web.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_service(app: App, *, web: bool, scheduler: bool) -> None:
    """Scheduler and web app in one process until SIGTERM or SIGINT."""
    if not web and not scheduler:
        raise click.UsageError("--no-web and --no-scheduler together leave nothing to run")
    configure_logging()
    app.warn_about_settings()
    from publisher.inbound.listener import Listener  # here, not at import: every command would load them
    from publisher.scheduler import Scheduler

    settings, store = app.settings, app.store
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("publisher").info("received %s; finishing the work in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = WebThread(app.publication) if web else None
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
@click.pass_obj
def run_command(app: App, no_web: bool, no_scheduler: bool) -> None:
    """Run the timetable and the web app until stopped (SIGTERM or Ctrl-C).

    Only one scheduler is active per database; a second `publisher run` waits as a standby
    and takes over when the first stops or dies.
    """
    run_service(app, web=not no_web, scheduler=not no_scheduler)


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
