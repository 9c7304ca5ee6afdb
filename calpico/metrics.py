"""What Calpico counts, for Prometheus (served at /metrics by `ops.probes`).

Several processes: every daphne process and every worker counts in its own memory unless
`PROMETHEUS_MULTIPROC_DIR` names a directory, in which case prometheus-client's
multiprocess mode keeps each process's values in files there (one per process and type,
memory-mapped), and /metrics, asked of any process, adds up the files of all of them. So
one scrape of one process, or of the proxy's name, sees the whole host. Counters and
histograms of processes that stopped stay in the sum (totals never go backwards when one
restarts); a gauge of open sockets counts live processes only (`livesum`), and the files
of processes that died without saying so are swept when /metrics is read
(`ops.probes.sweep_dead_processes`). The directory must be emptied when the host boots
(systemd's RuntimeDirectory in deploy/ does that) and be the same for every process of one
host. docs/operations.md has the details and example alerts.

What the database knows (queue depths, runs waiting) is read when /metrics is asked, once,
not counted here.
"""

from prometheus_client import Counter, Gauge, Histogram

# Delivery: from a message's commit to its frame written to a page's socket.
FANOUT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The model: first words and whole replies take seconds, images tens of seconds.
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)

WEBSOCKETS_OPEN = Gauge(
    "calpico_websockets_open", "WebSocket connections open now.", multiprocess_mode="livesum"
)
MESSAGES_POSTED = Counter(
    "calpico_messages_posted", "Messages stored and announced, by kind (text, system, assistant).", ["kind"]
)
FANOUT_SECONDS = Histogram(
    "calpico_fanout_seconds",
    "From a new message's announcement (after commit) to its frame sent to each page showing it.",
    buckets=FANOUT_BUCKETS,
)
ASSISTANT_RUNS_FINISHED = Counter(
    "calpico_assistant_runs_finished", "Assistant runs that ended, by kind and status.", ["kind", "status"]
)
MODEL_FIRST_TOKEN_SECONDS = Histogram(
    "calpico_model_first_token_seconds",
    "From a run's request to the model to its first words (an image: the picture).",
    ["kind"],
    buckets=MODEL_BUCKETS,
)
MODEL_SECONDS = Histogram(
    "calpico_model_seconds",
    "From a run's request to the model to its end, by kind and how it ended.",
    ["kind", "status"],
    buckets=MODEL_BUCKETS,
)
MODEL_TOKENS = Counter(
    "calpico_model_tokens", "Tokens the model read (prompt) and wrote (completion).", ["type"]
)
JOBS_FINISHED = Counter(
    "calpico_jobs_finished",
    "Durable jobs that ended an attempt, by kind and status (queued: to be retried).",
    ["kind", "status"],
)
