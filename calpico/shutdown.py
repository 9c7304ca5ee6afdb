"""A graceful stop of a web process: sockets told to reconnect, assistant runs handed back.

daphne runs on Twisted's reactor and does not speak ASGI lifespan (nor does Channels), so
the public place to act on SIGTERM (daphne's graceful stop; SIGINT too) is Twisted's
`reactor.addSystemEventTrigger("before", "shutdown", ...)`: on `reactor.stop()` the
reactor calls every "before shutdown" trigger, waits for the Deferreds they return, and
only then drops the connections that are left. daphne's own trigger cancels every
application instance; without more, each WebSocket would just be cut (1006, no close
frame). Ours, registered when the application module is loaded under daphne:

- sends every open WebSocket of this process a close frame with 1012 (service restart):
  pages reconnect at once, to another process, and catch up;
- has this process's assistant runner hand its running runs back to the queue and wake
  the other processes' runners (`assistant.runner.Runner.shut_down`), and its job runner
  its job in hand (`jobs.runner.shut_down`, on a thread: it waits for the job's next step);
- with metrics shared between processes, drops this process's live gauges (open sockets)
  from the sum;

and lets the reactor go on once the clients have answered and the runs are back (at most
SHUTDOWN_TIMEOUT).

Why the close frame does not go through ASGI: daphne passes a `websocket.close` to
autobahn's `sendClose`, which accepts only 1000 and 3000-4999 from an application, so 1012
cannot be sent that way. The open connections are found with the reactor's public
`getReaders()` (each TCP transport's `protocol`, daphne's autobahn WebSocket protocol once
upgraded) and closed with autobahn's `sendCloseFrame`, the call autobahn itself uses for
protocol-level codes; its `is_closed` Deferred says when the closing handshake is done.
No daphne internals are patched or reached into.

Before all that, with `SHUTDOWN_DRAIN_SECONDS`, the process drains: on SIGTERM it goes on
serving everything (sockets stay open and live) while /readyz answers 503 "stopping", and
stops only once /readyz has been asked (the proxy's health check has seen it), a moment
went by and the HTTP requests in flight were answered (`calpico.in_flight`: an upload the
proxy sent before is not cut), or after that many seconds. As the drain begins, the
process's assistant runs and jobs are handed back and it claims no more.

A proxy only learns that a process is gone from its health checks or by failing to reach
it, and Debian's Caddy (2.6) cannot retry a request with a body after failing to reach
one: the first post to find the stopped process was answered 502 and the process it was
retried on counted as failed, so every request got 503 for `fail_duration`
(caddyserver/caddy#5454, fixed in Caddy 2.11). A second SIGTERM, or SIGINT, stops at once.
"""

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading

from django.conf import settings
from prometheus_client.multiprocess import mark_process_dead
from twisted.internet.error import ReactorNotRunning

from assistant import runner
from calpico import in_flight
from jobs import runner as jobs_runner

log = logging.getLogger(__name__)

# 1012 "Service Restart": the server is restarting; reconnect (to another process).
CLOSE_SERVICE_RESTART = 1012
# How long a stopping process waits for close handshakes and the hand-back.
SHUTDOWN_TIMEOUT = 2.0
# How long a draining process goes on once /readyz said "stopping": requests the proxy
# sent before it took the answer in are served.
DRAIN_GRACE_SECONDS = 0.5
# How often a drain that is over looks again for HTTP requests still in flight.
IN_FLIGHT_POLL_SECONDS = 0.1

_draining = threading.Event()  # set on the reactor's thread, read by /readyz on any
_on_readiness_asked = None  # while draining: ends the drain soon (callable from any thread)
_handing_back: set = set()


def under_daphne() -> bool:
    """daphne installed its Twisted reactor before importing the application."""
    return "daphne.server" in sys.modules and "twisted.internet.reactor" in sys.modules


def _open_websockets() -> list:
    from autobahn.websocket.protocol import WebSocketProtocol
    from twisted.internet import reactor

    found = []
    for reader in reactor.getReaders():  # type: ignore[misc]  # the reactor is typed as a module
        protocol = getattr(reader, "protocol", None)
        protocol = getattr(protocol, "wrappedProtocol", protocol)  # behind TLS
        if isinstance(protocol, WebSocketProtocol) and protocol.state == WebSocketProtocol.STATE_OPEN:
            found.append(protocol)
    return found


def close_all_local_sockets(code: int = CLOSE_SERVICE_RESTART) -> list:
    """Send every open WebSocket of this process a close frame with `code` (a protocol
    code such as 1012, which an ASGI `websocket.close` cannot send on daphne). Call from
    the event loop. Returns the closing connections; none when not under daphne."""
    if not under_daphne():
        return []
    sockets = _open_websockets()
    for protocol in sockets:
        try:
            protocol.sendCloseFrame(code=code, isReply=False)
        except Exception:
            log.exception("Could not close a WebSocket with %s", code)
    return sockets


def draining() -> bool:
    """True once a SIGTERM started this process's drain: /readyz answers 503."""
    return _draining.is_set()


def readiness_asked() -> None:
    """/readyz answered "stopping" (from a request's thread): the drain ends shortly."""
    hook = _on_readiness_asked
    if hook is not None:
        hook()


def _hand_back_work() -> None:
    """The drain begins: this process claims no more assistant runs nor jobs, and hands
    back those it holds, for the other processes (or the workers) to take now rather than
    when the drain ends. The stop's own hand-back then waits for this one. Called on the
    reactor's thread, which runs the asyncio loop (daphne's asyncio reactor)."""
    handing = asyncio.ensure_future(runner.shut_down())
    handing.add_done_callback(_log_failure)
    _handing_back.add(handing)  # the loop holds tasks only weakly
    threading.Thread(target=jobs_runner.shut_down, name="jobs-hand-back", daemon=True).start()


def _log_failure(task: asyncio.Future) -> None:
    _handing_back.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("Could not hand the assistant's runs back", exc_info=task.exception())


def _install_drain(reactor, seconds: float) -> None:
    """On SIGTERM, drain for up to `seconds`, then stop the reactor (the graceful stop
    below). Installed once the reactor runs, over Twisted's own SIGTERM handler."""
    global _on_readiness_asked
    state: dict = {}

    def stop(why: str) -> None:
        # Once: a second SIGTERM, then the drain's timer, would otherwise stop a reactor
        # that is already stopping (ReactorNotRunning: `running` stays true until the
        # shutdown's triggers are done).
        if state.get("stopping"):
            return
        state["stopping"] = True
        for name in ("deadline", "grace"):
            timer = state.get(name)
            if timer is not None and timer.active():
                timer.cancel()
        log.info("Drain over: %s", why)
        if reactor.running:
            with contextlib.suppress(ReactorNotRunning):
                reactor.stop()

    def stop_once_served() -> None:
        # The proxy took the answer in: it sends nothing more here, but what it sent before
        # (an upload still arriving, a slow page) is answered first. The drain's own
        # deadline still holds.
        waiting = in_flight.count()
        if waiting:
            if not state.get("waited"):
                state["waited"] = True
                log.info("Drain: waiting for %d HTTP request(s) in flight", waiting)
            state["grace"] = reactor.callLater(IN_FLIGHT_POLL_SECONDS, stop_once_served)
            return
        stop("/readyz said stopping and no HTTP request is in flight")

    def end_soon() -> None:
        deadline = state.get("deadline")
        if deadline is None or not deadline.active() or "grace" in state:
            return
        if deadline.getTime() - reactor.seconds() > DRAIN_GRACE_SECONDS:
            state["grace"] = reactor.callLater(DRAIN_GRACE_SECONDS, stop_once_served)

    def begin() -> None:
        if _draining.is_set():
            stop("SIGTERM again")
            return
        log.info("Draining: /readyz answers 503 until the proxy saw it (%.0f s at most)", seconds)
        _draining.set()
        _hand_back_work()
        state["deadline"] = reactor.callLater(seconds, stop, f"its {seconds:g} s are up")

    def on_sigterm(signum, frame) -> None:
        reactor.callFromThread(begin)

    _on_readiness_asked = lambda: reactor.callFromThread(end_soon)  # noqa: E731
    signal.signal(signal.SIGTERM, on_sigterm)


def install_reactor_hook() -> bool:
    """Under daphne, run the graceful stop before the reactor shuts down. Anywhere else
    (tests, other servers) nothing is installed and no reactor is imported."""
    if not under_daphne():
        return False
    from twisted.internet import defer, reactor, threads

    def before_shutdown():
        sockets = close_all_local_sockets(CLOSE_SERVICE_RESTART)
        handed_back = defer.Deferred.fromFuture(asyncio.ensure_future(runner.shut_down()))
        jobs_back = threads.deferToThread(jobs_runner.shut_down)
        if settings.PROMETHEUS_MULTIPROC_DIR:
            mark_process_dead(os.getpid(), settings.PROMETHEUS_MULTIPROC_DIR)
        done = defer.DeferredList(
            [handed_back, jobs_back, *(p.is_closed for p in sockets)], consumeErrors=True
        )
        done.addTimeout(SHUTDOWN_TIMEOUT, reactor)
        done.addErrback(lambda failure: log.warning("Graceful stop cut short: %s", failure.value))
        return done

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[arg-type]
    if settings.SHUTDOWN_DRAIN_SECONDS > 0:
        # After Twisted installed its signal handlers (when the reactor starts).
        reactor.callWhenRunning(_install_drain, reactor, settings.SHUTDOWN_DRAIN_SECONDS)
    return True
