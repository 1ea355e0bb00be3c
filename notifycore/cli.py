"""The ``notifycore`` command line: send, tail, worker, dead-letters, plugins, check.

Every command reads settings from ``--config FILE`` (TOML, INI or JSON) and
``NOTIFYCORE_*`` environment variables, or uses the application given with
``--app module:notifications`` (``NOTIFYCORE_APP``). Errors print as one line
on standard error with exit status 1 (2 for usage errors, as argparse does);
``--traceback`` adds the whole traceback. Output cut short by a closed pipe
(``notifycore plugins | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from notifycore import drivers
from notifycore.config import read_config_file
from notifycore.consumers import PushConsumer
from notifycore.errors import CommandError, InvalidEvent, NotifycoreError, UnknownHub
from notifycore.event import STANDARD_FIELDS, Event
from notifycore.hub import HUB_ID_PREFIX, hub_id
from notifycore.notifications import Notifications
from notifycore.plugins import get_plugins
from notifycore.worker import Worker

__all__ = ["DEFAULT_SENDER", "CommandError", "Progress", "build_parser", "load_app", "main"]

#: The sender of an event ``notifycore send`` builds when ``--sender`` is not given.
DEFAULT_SENDER = "cli"


# -- building the Notifications ------------------------------------------------------------------


def load_app(spec: str) -> Notifications:
    """Import ``package.module:attribute`` (attribute defaults to ``notifications``)."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "notifications"
    if not module_name or module_name.startswith("."):
        raise CommandError(f"--app takes package.module:attribute, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like celery -A: the app lives where you run the command
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import the app module {module_name!r}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--app takes package.module:attribute, not {spec!r}: {exc}") from exc
    except Exception as exc:
        # The application's own error: one line here, the whole traceback with --traceback.
        raise CommandError(
            f"importing the app module {module_name!r} raised {_one_line(exc)} "
            "(--traceback shows where)"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(target, Notifications) and callable(target):
        try:
            target = target()
        except NotifycoreError:
            raise
        except Exception as exc:
            raise CommandError(
                f"calling {spec} raised {_one_line(exc)} (--traceback shows where)"
            ) from exc
    if not isinstance(target, Notifications):
        extensions = getattr(target, "extensions", None)
        if isinstance(extensions, dict) and isinstance(
            extensions.get("notifications"), Notifications
        ):
            target = extensions["notifications"]
    if not isinstance(target, Notifications):
        raise CommandError(f"{spec!r} is {type(target).__name__}, not a Notifications object")
    return target


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (the first line of a long message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def notifications_from(args: argparse.Namespace) -> Notifications:
    if args.app:
        if args.config:
            raise CommandError("--config applies when no --app is given: the app configures itself")
        return load_app(args.app)
    path = args.config or os.environ.get("NOTIFYCORE_CONFIG")
    return Notifications(config=path or {})


# -- live counts ------------------------------------------------------------------------------


#: How often a progress line is written when standard error is not a terminal (seconds).
PROGRESS_EVERY = 2.0
#: How often the count is rewritten in place on a terminal.
PROGRESS_EVERY_TTY = 0.2


def _progress_every(tty: bool) -> float:
    """``NOTIFYCORE_PROGRESS_EVERY`` seconds if set, else the default for the kind of stream."""
    text = os.environ.get("NOTIFYCORE_PROGRESS_EVERY")
    if text is not None:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < float("inf"):
            raise CommandError(
                f"NOTIFYCORE_PROGRESS_EVERY must be a number of seconds >= 0, not {text!r}"
            )
        return value
    return PROGRESS_EVERY_TTY if tty else PROGRESS_EVERY


class Progress:
    """A live count on standard error: rewritten in place on a terminal, a line now and then otherwise.

    ``total`` (when known) is shown as ``(of total)``. The final count is shown
    once by :meth:`done`, never twice.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        every: float | None = None,
        total: int | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = _progress_every(self.tty) if every is None else every
        self.total = total
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # A terminal shows the count at once; a log gets its first line only after a while,
        # so that quick work writes one line, the final count.
        self._shown: float | None = None if self.tty else time.monotonic()
        self._last = ""

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + value
            now = time.monotonic()
            if self._shown is None or now - self._shown >= self.every:
                self._shown = now
                self._show(final=False)

    def _text(self) -> str:
        parts = ", ".join(f"{n} {k}" for k, n in self.counts.items()) or "nothing yet"
        if self.total is not None:
            parts += f" (of {self.total})"
        return f"{self.label}: {parts}"

    def _show(self, final: bool) -> None:
        text = self._text()
        try:
            if self.tty:
                # Padded over a longer earlier text; a newline ends the line for good.
                pad = " " * max(0, len(self._last) - len(text))
                self.stream.write("\r" + text + pad + ("\n" if final else ""))
            elif text != self._last:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # a closed stream never stops the work
            pass
        self._last = text

    def done(self) -> None:
        """Show the final count once (nothing when nothing was counted)."""
        with self._lock:
            if self.counts:
                self._show(final=True)


# -- send -------------------------------------------------------------------------------------


def _events_from_json(source: str) -> Iterator[Event]:
    where = "standard input" if source == "-" else source
    if source == "-":
        raw = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as handle:
            raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{where} is not UTF-8: {exc}") from None
    stripped = text.strip()
    if not stripped:
        raise CommandError(f"no event in {where}")
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        yield Event.from_dict(whole)
        return
    if isinstance(whole, list):
        for item in whole:
            yield Event.from_dict(item)
        return
    for number, line in enumerate(stripped.splitlines(), 1):
        if line.strip():
            try:
                yield Event.from_json(line)
            except InvalidEvent as exc:
                raise CommandError(f"line {number}: {exc}") from None


_OPTION_FOR = {
    "event_id": "--id",
    "event_type": "--type",
    "title": "--title",
    "body": "--body",
    "sender": "--sender",
    "recipients": "--recipient",
    "tags": "--tag",
    "expiration_datetime": "--expires",
}


def _event_from_options(args: argparse.Namespace) -> Event:
    if not args.type:
        raise CommandError("give --type (and --title, --body...) or --json FILE")
    extra: dict[str, Any] = {}
    for item in args.field or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--field takes key=value, not {item!r}")
        if key in STANDARD_FIELDS or key == "self":
            raise CommandError(
                f"--field {key}=... names a standard field; use {_OPTION_FOR.get(key, 'its option')}"
            )
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    return Event(
        args.id,
        args.type,
        args.title,
        args.body,
        sender=args.sender,
        recipients=args.recipient or (),
        tags=args.tag or (),
        expiration_datetime=args.expires,
        **extra,
    )


def _cmd_send(args: argparse.Namespace) -> int:
    # Every event is parsed and validated before the first is sent: a bad line sends nothing.
    events = list(_events_from_json(args.json)) if args.json else [_event_from_options(args)]
    notifications = notifications_from(args)
    progress: Progress | None = None
    # What a default PushConsumer of each hub would publish: an event with recipients to their
    # own streams, and to the hub's only when explicitly broadcast (the privacy rule).
    pusher = PushConsumer(broadcast_private=args.broadcast_private)
    try:
        if not args.hub and not notifications.hubs:
            raise CommandError(
                "nothing would receive the event: pass --app module:notifications or --config "
                "FILE declaring hubs to send through them, or --hub LABEL to publish to a "
                "hub's stream"
            )
        events = [notifications.coerce_event(event) for event in events]  # sizes too, first
        targets = [_stream_name(notifications, h) for h in args.hub or ()]
        if args.json:
            progress = Progress("sent", total=len(events))
        for event in events:
            if targets:
                data = event.to_json_bytes()
                streams = list(
                    dict.fromkeys(s for t in targets for s in pusher.streams_for(t, event))
                )
                for stream in streams:
                    notifications.backend.append(stream, data)
                line = f"{event.event_id} published to {', '.join(streams)}"
            else:
                result = notifications.send(event)
                summary = ", ".join(f"{o.hub}/{o.consumer}={o.status}" for o in result.outcomes)
                line = f"{event.event_id} {summary or 'matched no hub'}"
            # One line per event, with its id, on standard output; the count on standard error.
            print(line, flush=progress is None)
            if progress is not None:
                progress.add("events")
    finally:
        sys.stdout.flush()
        if progress is not None:
            progress.done()
        notifications.close()
    return 0


# -- tail -------------------------------------------------------------------------------------


#: What a hub label, hub id or stream name given on the command line may look like.
_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$")


def _stream_name(notifications: Notifications, name: str) -> str:
    """The stream that ``name`` (a hub label or hub id, or a stream such as ``user:alice``) means.

    A name must be known, so that a typo is an error rather than a stream no
    one reads: a hub of the app or configuration; else, when there is one, a
    stream named in full (with a ``:``, such as ``user:alice``); when nothing
    declares hubs, also a hub id (``event-hub-Chat``), or a label whose stream
    already has events.
    """
    try:
        return notifications.get_hub(name).hub_id
    except UnknownHub:
        pass
    if not _STREAM_NAME.match(name):
        raise CommandError(
            f"{name!r} is not a hub label, hub id or stream name: use letters, digits and "
            "_.:@- (a hub label such as Chat, or a stream such as user:alice)"
        )
    is_hub_id = name.startswith(HUB_ID_PREFIX)
    if ":" in name and not is_hub_id:
        return name  # a stream named in full: user:alice
    hubs = sorted(notifications.hubs)
    if hubs:
        label = name[len(HUB_ID_PREFIX) :] if is_hub_id else name
        message = f"no hub named {name!r} (hubs: {', '.join(hubs)})"
        import difflib

        close = difflib.get_close_matches(label, hubs, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        raise CommandError(message)
    if is_hub_id:
        return name
    stream = hub_id(name)
    if notifications.backend.last_id(stream) is None:
        raise CommandError(
            f"no hub named {name!r}: no --app or --config declares hubs, and {stream} has no "
            f"events yet; pass --app module:notifications or --config FILE, or name the stream "
            f"in full ({stream}) to use it anyway"
        )
    return stream


def _cmd_tail(args: argparse.Namespace) -> int:
    notifications = notifications_from(args)
    try:
        stream = _stream_name(notifications, args.hub)
    except BaseException:
        notifications.close()
        raise
    stop = threading.Event()
    if args.timeout is not None:
        timer = threading.Timer(args.timeout, stop.set)
        timer.daemon = True
        timer.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    received = 0
    backend = notifications.backend
    start = args.since if args.since is not None else backend.last_id(stream) or "0"
    backend.read(stream, start, limit=1)  # a malformed --since fails here, as one line
    sys.stderr.write(f"notifycore: following {stream} after id {start}\n")
    sys.stderr.flush()
    try:
        for batch in backend.follow(stream, start, stop=stop, poll=0.2):
            if batch.reset:
                sys.stderr.write(
                    f"notifycore: reset: events before {batch.messages[0].id if batch.messages else 'now'} "
                    "are no longer kept; some were missed\n"
                )
                if args.format == "json":
                    print(json.dumps({"reset": True}), flush=True)
            for message in batch.messages:
                _print_message(message.id, message.data, args.format)
                received += 1
                if args.count is not None and received >= args.count:
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        notifications.close()
    return 0


def _print_message(message_id: str, data: bytes, form: str) -> None:
    if form == "json":
        sys.stdout.write(f'{{"id":{json.dumps(message_id)},"event":{data.decode()}}}\n')
    else:
        try:
            event = Event.from_json(data, max_size=None)
            text = f"{event.timestamp.isoformat()} {event.event_type} {event.sender}: {event.title}"
        except InvalidEvent:
            text = data.decode(errors="replace")
        sys.stdout.write(f"{message_id} {text}\n")
    sys.stdout.flush()


# -- worker -----------------------------------------------------------------------------------


def _cmd_worker(args: argparse.Namespace) -> int:
    notifications = notifications_from(args)
    progress = Progress("jobs")
    try:
        worker = Worker(
            notifications,
            args.queue or None,
            concurrency=args.concurrency,
            grace=args.grace,
            on_outcome=lambda outcome: progress.add(str(outcome)),
        )
    except BaseException:
        notifications.close()
        raise
    _log_to_stderr()
    signals = 0

    def on_signal(signum: int, frame: object) -> None:
        # Only flags: the worker's main loop reports and acts (a handler takes no lock).
        nonlocal signals
        signals += 1
        worker.request_stop(signal.Signals(signum).name, now=signals > 1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stderr.write(
        f"notifycore worker: queues {', '.join(worker.queues)} on {notifications.backend!r}, "
        f"{args.concurrency} thread(s)\n"
    )
    sys.stderr.flush()
    try:
        worker.run(burst=args.burst)
    finally:
        progress.done()
        stuck = worker.stuck_threads or worker.running
        _close_within(notifications, 10.0 if stuck else None)
    status = 0
    if worker.exhausted:
        sys.stderr.write(
            "notifycore: error: every worker thread is stuck in a consumer past its time limit; "
            "exiting so that the worker can be restarted\n"
        )
        status = 1
    if stuck:
        # Python cannot end a thread stuck in a consumer, and the interpreter's exit would wait
        # on some (to_thread pools, say): leave at once, the jobs are back on their queues.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _log_to_stderr() -> None:
    """Show the worker's own log lines (outages, stops, dead jobs) unless the app set up logging."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _close_within(notifications: Notifications, seconds: float | None) -> None:
    """Close the notifications; with ``seconds``, give up waiting after that long."""
    if seconds is None:
        notifications.close()
        return
    closing = threading.Thread(target=notifications.close, name="notifycore-close", daemon=True)
    closing.start()
    closing.join(seconds)


# -- dead letters -----------------------------------------------------------------------------


#: Dead letters requeued or purged per backend call, so that progress can be shown.
DEAD_LETTER_BATCH = 500


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    notifications = notifications_from(args)
    queue = args.queue or notifications.settings["DEFAULT_QUEUE"]
    backend = notifications.backend
    try:
        if args.action == "list":
            letters = backend.dead_letters(queue, limit=args.limit)
            for letter in letters:
                if args.json:
                    print(
                        json.dumps(
                            {
                                "id": letter.id,
                                "queue": letter.queue,
                                "attempts": letter.attempts,
                                "error": letter.error,
                                "failed_at": letter.failed_at,
                                "payload": letter.payload.decode(errors="replace"),
                            }
                        )
                    )
                else:
                    print(f"{letter.id}\t{letter.attempts} tries\t{letter.error}")
            if not args.json:
                sys.stderr.write(f"{len(letters)} dead letter(s) in queue {queue!r}\n")
            return 0
        # The ids to act on, all checked first: an id that is not there changes nothing.
        present = [letter.id for letter in backend.dead_letters(queue)]
        if args.id:
            wanted = list(dict.fromkeys(args.id))
            missing = [i for i in wanted if i not in set(present)]
            if missing:
                raise CommandError(
                    f"no dead letter with id {', '.join(missing)} in queue {queue!r} "
                    f"({len(present)} there; see: notifycore dead-letters list --queue {queue})"
                )
            present = wanted
        act = (
            backend.requeue_dead_letters if args.action == "requeue" else backend.purge_dead_letters
        )
        done_word = "requeued" if args.action == "requeue" else "purged"
        # A live count when it takes more than one batch.
        many = len(present) > DEAD_LETTER_BATCH
        progress = Progress(done_word, total=len(present)) if many else None
        count = 0
        try:
            for start in range(0, len(present), DEAD_LETTER_BATCH):
                done = act(queue, present[start : start + DEAD_LETTER_BATCH])
                count += done
                if progress is not None:
                    progress.add("dead letters", done)
        finally:
            if progress is not None:
                progress.done()
        where = "in" if args.action == "requeue" else "from"
        print(f"{done_word} {count} dead letter(s) {where} queue {queue!r}")
    finally:
        notifications.close()
    return 0


# -- plugins ----------------------------------------------------------------------------------


def _cmd_plugins(args: argparse.Namespace) -> int:
    if args.config:
        read_config_file(args.config)  # a broken file is reported, even here
    out = sys.stdout
    out.write("plugins:\n")
    for info in get_plugins().list_plugins():
        origin = (
            f"{info.distribution} {info.version}" if info.distribution else "registered at run time"
        )
        out.write(f"  {info.name}  ({origin})  hooks: {', '.join(info.hooks) or '-'}\n")
    for title, namespace in (("backends", drivers.BACKENDS), ("consumers", drivers.CONSUMERS)):
        out.write(f"{title}:\n")
        for driver in drivers.list_drivers(namespace):
            origin = f"{driver.distribution} {driver.version}" if driver.distribution else "?"
            out.write(f"  {driver.name} = {driver.target}  ({origin})\n")
    return 0


# -- check ------------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    if args.app:
        notifications = notifications_from(args)
        where, backend_line = args.app, repr(notifications.backend)
    else:
        where = args.config or os.environ.get("NOTIFYCORE_CONFIG")
        if not where:
            raise CommandError("give --config FILE (or NOTIFYCORE_CONFIG) to check")
        try:
            from notifycore.backends.memory import MemoryBackend

            # A memory backend: checking connects to no broker and creates no file.
            notifications = Notifications(config=where, backend=MemoryBackend())
            spec = notifications.settings["BACKEND"]
            try:
                cls = Notifications.backend_class(spec)
            except NotifycoreError:
                notifications.close()
                raise
        except NotifycoreError as exc:
            message = str(exc)
            raise CommandError(message if where in message else f"{where}: {message}") from exc
        backend_line = f"{spec} ({cls.__module__}:{cls.__qualname__})"
    try:
        _print_hubs(notifications, where, backend_line)
    finally:
        notifications.close()
    return 0


def _print_hubs(notifications: Notifications, where: str, backend: str) -> None:
    out = sys.stdout
    out.write(f"configuration: {where}\nbackend: {backend}\n")
    declared = notifications.declarations.listeners
    for hub in notifications.hubs.values():
        out.write(f"hub {hub.label}  filter: {hub.filter!r}\n")
        for registration in hub.registrations:
            line = f"  listener {registration.name}"
            spec = declared.get(registration.name)
            if spec is not None:
                line += f"  use: {spec.use}"
            line += f"  mode: {registration.mode}"
            if registration.mode == "queued":
                queue = registration.queue or notifications.settings["DEFAULT_QUEUE"]
                line += f" (queue {queue})"
            if registration.filter is not None:
                line += f"  filter: {registration.filter!r}"
            out.write(f"{line}  consumer: {registration.consumer!r}\n")
    listeners = sum(len(hub.registrations) for hub in notifications.hubs.values())
    out.write(f"ok: {len(notifications.hubs)} hub(s), {listeners} listener(s)\n")


# -- parser -----------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid positive integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid positive integer: {text!r} (at least 1)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (TOML, INI or JSON); NOTIFYCORE_CONFIG when no --app is given",
    )
    common.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        default=os.environ.get("NOTIFYCORE_APP"),
        help="the application's Notifications, e.g. myapp.events:notifications; NOTIFYCORE_APP",
    )
    common.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, print the whole traceback too (not only its one line)",
    )
    parser = argparse.ArgumentParser(
        prog="notifycore", description="Send, follow and deliver notifications."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser("send", parents=[common], help="send an event")
    send.add_argument("--type", help="event type")
    send.add_argument("--title", default="")
    send.add_argument("--body", default="")
    send.add_argument(
        "--sender", default=DEFAULT_SENDER, help=f"who sends it (default: {DEFAULT_SENDER})"
    )
    send.add_argument("--id", default=None, help="event id (default: a new uuid4)")
    send.add_argument("--recipient", action="append", metavar="USER")
    send.add_argument("--tag", action="append")
    send.add_argument(
        "--field", action="append", metavar="KEY=VALUE", help="extra field (JSON value or text)"
    )
    send.add_argument(
        "--expires", metavar="ISO-8601", help="expiration date and time, with its offset"
    )
    send.add_argument(
        "--json",
        metavar="FILE",
        help="events as JSON (an object, a list or JSON Lines); - for stdin",
    )
    send.add_argument(
        "--hub",
        action="append",
        metavar="LABEL",
        help="publish straight to this hub's stream (with recipients: to theirs instead)",
    )
    send.add_argument(
        "--broadcast-private",
        action="store_true",
        help="with --hub: an event with recipients goes to the hub's stream too",
    )
    # Kept for old scripts: recipients' own streams are always published to now.
    send.add_argument("--per-recipient", action="store_true", help=argparse.SUPPRESS)
    send.set_defaults(handler=_cmd_send)

    tail = commands.add_parser("tail", parents=[common], help="follow a hub's stream")
    tail.add_argument("hub", metavar="HUB", help="hub label, hub id or stream name (user:alice)")
    tail.add_argument("--since", metavar="ID", help="replay what came after this id first")
    tail.add_argument("--count", type=_positive, help="exit after this many events")
    tail.add_argument("--timeout", type=_seconds, help="exit after this many seconds")
    tail.add_argument("--format", choices=("text", "json"), default="text")
    tail.set_defaults(handler=_cmd_tail)

    worker = commands.add_parser("worker", parents=[common], help="run queued consumers")
    worker.add_argument("--concurrency", "-c", type=_positive, default=1, metavar="N")
    worker.add_argument("--queue", "-Q", action="append", metavar="NAME")
    worker.add_argument("--burst", action="store_true", help="exit once no job is waiting")
    worker.add_argument(
        "--grace",
        type=_seconds,
        metavar="SECONDS",
        help="on SIGTERM, let jobs in flight finish this long, then give them back "
        "(default: WORKER_GRACE_PERIOD)",
    )
    worker.set_defaults(handler=_cmd_worker)

    dead = commands.add_parser(
        "dead-letters", parents=[common], help="list, requeue or purge dead letters"
    )
    dead.add_argument("action", choices=("list", "requeue", "purge"))
    dead.add_argument("--queue", metavar="NAME", help="default: the DEFAULT_QUEUE setting")
    dead.add_argument("--id", action="append", metavar="ID", help="only these (default: all)")
    dead.add_argument("--limit", type=_positive)
    dead.add_argument("--json", action="store_true", help="list as JSON Lines")
    dead.set_defaults(handler=_cmd_dead_letters)

    plugins = commands.add_parser(
        "plugins",
        parents=[common],
        help="list the plugins, backends and consumers that are installed",
    )
    plugins.set_defaults(handler=_cmd_plugins)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="validate a configuration; print the hubs, filters and listeners it builds",
    )
    check.set_defaults(handler=_cmd_check)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for (reading the
    installed distributions would slow down every command's start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        try:
            sys.stdout.write(f"notifycore {_version()}\n")
            sys.stdout.flush()
        except BrokenPipeError:
            parser.exit(_quiet_broken_pipe())
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("notifycore")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        from notifycore import __version__

        return __version__


def _error(exc: BaseException, args: argparse.Namespace) -> int:
    """One line on standard error (the whole traceback first with ``--traceback``); status 1."""
    if getattr(args, "traceback", False):
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc).strip() or type(exc).__name__
    sys.stderr.write(f"notifycore: error: {message}\n")
    return 1


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as Python's docs advise.

    Standard output is pointed at /dev/null so that the interpreter's last flush
    at exit raises nothing more; SIGPIPE keeps Python's handling, so a socket
    that closes never kills a worker.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.handler(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (NotifycoreError, OSError) as exc:
        return _error(exc, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
