"""Calpico settings.

Every value that differs between a laptop and a production server is read from the
environment here, and only here. With no environment at all the app runs embedded:
SQLite and media under var/, an in-memory channel layer and a secret key generated once
into var/.
"""

import ipaddress
import os
import secrets
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = env(name)
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = env(name)
    try:
        return float(value) if value else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from exc


def env_networks(name: str, default: str = "") -> list[str]:
    """Addresses or networks (127.0.0.1, 10.0.0.0/8, ::1), checked here."""
    entries = env_list(name, default)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not an address or network") from exc
    return entries


VAR_DIR = Path(env("CALPICO_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env("SECRET_KEY")
    if key:
        return key
    # Embedded mode: generate once and keep it, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS=true when the app is served behind TLS (a reverse proxy terminating it).
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("SECURE_HSTS_PRELOAD", False)
if HTTPS:
    # Believed only from TRUSTED_PROXIES: calpico.middleware.TrustedProxyMiddleware drops the
    # header from anyone else before SecurityMiddleware reads it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The reverse proxies in front (addresses or networks): their X-Forwarded-For names the
# client (rate limits count it) and their X-Forwarded-Proto says HTTPS. Nobody else's.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", "127.0.0.1,::1")
# Preloading is a promise about every subdomain that a self-hosted install cannot make for
# its owner; SECURE_HSTS_PRELOAD=true opts in.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
# Sessions are read on every request: from the cache (Redis in production), written
# through to the database so none is lost when the cache is cleared, and read from the
# database while the cache cannot be reached (calpico/cache.py answers as a miss).
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_CACHE_ALIAS = "sessions"
# How long the cache keeps a session's copy before it is read from the database again: also
# the longest a session ended during a Redis outage may be honoured by another process.
SESSION_CACHE_SECONDS = 5 * 60

INSTALLED_APPS = [
    "daphne",
    "calpico.apps.AdminConfig",  # django.contrib.admin, on calpico.admin.AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "allauth",
    "allauth.account",
    "accounts",
    "rooms",
    "assistant",
    "jobs",
    "privacy",
    "ops",
    "e2ee",
    "notifications",
]

MIDDLEWARE = [
    "calpico.middleware.TrustedProxyMiddleware",
    "ops.probes.ProbesMiddleware",  # /healthz, /readyz, /metrics: before sessions and redirects
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "calpico.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the browser's (Accept-Language), then a signed-in person's own choice
    # (calpico.middleware.UserLanguageMiddleware, once request.user is known).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "calpico.middleware.UserLanguageMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "calpico.urls"
ASGI_APPLICATION = "calpico.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

# Databases: SQLite under var/ unless DATABASE_URL names another (PostgreSQL in production).
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'calpico.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so two writers queue
    # instead of one failing with "database is locked" when it upgrades a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Keep the connection between requests: opening one (Django registers its SQL
    # functions, the PRAGMAs run) cost more than a post's queries. Every synchronous view,
    # consumer and service call runs in the one thread asgiref keeps for thread-sensitive
    # code (calpico/handlers.py), so that thread's connection is reused; Django still
    # closes one that failed. The runner has its own (assistant/runner_db.py).
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 3600)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", True):
    # A connection pool rather than a new connection per request (persistent connections
    # are not safe under ASGI; Django's psycopg pool is).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2),
        "max_size": env_int("DATABASE_POOL_MAX", 20),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")


def redis_caches(url: str, prefix: str) -> dict[str, dict]:
    """The caches on Redis: while it cannot be reached they answer as empty caches
    (calpico/cache.py), and a Redis that stops answering holds a request for at most a
    second, once a second."""
    cache = {
        "BACKEND": "calpico.cache.FailSoftRedisCache",
        "LOCATION": url,
        "KEY_PREFIX": prefix,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    return {
        "default": cache,
        "sessions": {**cache, "MAX_TIMEOUT": SESSION_CACHE_SECONDS},
        # Messages' shared HTML (rooms/fragments.py): apart, so it never crowds out the rest.
        "fragments": {**cache, "KEY_PREFIX": f"{prefix}-html"},
    }


if REDIS_URL:
    CACHES = redis_caches(REDIS_URL, env("CACHE_KEY_PREFIX", "calpico"))
    # Pub/sub: one PUBLISH per room event, fanned out to local sockets by each process, and
    # no group expiry to silently drop long-lived connections. Delivery is at most once;
    # the database is the truth and clients catch up by sequence number (docs/live.md):
    # when a process subscribes to Redis again, its sockets are told to (calpico/layers.py).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "calpico.layers.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env("CHANNEL_LAYER_PREFIX", "calpico"),
            },
        }
    }
else:
    # Presence keeps a key per online person: room for many more than the default 300.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
        "sessions": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "sessions",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
        # Messages' shared HTML (rooms/fragments.py), about 2 KB each: apart, so culling it
        # never drops a rate limit's counter or someone's presence.
        "fragments": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "fragments",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        },
    }
    # capacity: events a socket may have queued before new ones are dropped (it then
    # catches up from the database); expiry: seconds an undelivered event is kept.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "calpico.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    }

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "rooms:index"
LOGOUT_REDIRECT_URL = "landing"

# django-allauth: username and password, email optional, rate limits on (its defaults).
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_USERNAME_MIN_LENGTH = 3
ACCOUNT_USERNAME_VALIDATORS = "accounts.validators.USERNAME_VALIDATORS"
ACCOUNT_PRESERVE_USERNAME_CASING = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {"signup": "accounts.forms.SignupForm", "login": "accounts.forms.LoginForm"}
ACCOUNT_RATE_LIMITS_ENABLED = env_bool("ACCOUNT_RATE_LIMITS_ENABLED", True)
if not ACCOUNT_RATE_LIMITS_ENABLED:
    ACCOUNT_RATE_LIMITS = False
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "calpico@localhost")

# English unless the browser asks for French (or the person chose it in their settings).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the source folders so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
# In production a reverse proxy may serve MEDIA_ROOT itself; then set SERVE_MEDIA=false.
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
# An uploaded file larger than this is written to a temporary file as it arrives, not
# held in memory (Django's default); so is the request body as Django reads it.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# The form fields beside the files (files themselves are not counted here).
DATA_UPLOAD_MAX_MEMORY_SIZE = 6 * 1024 * 1024

# Product limits.
AVATAR_MAX_BYTES = 5 * 1024 * 1024
AVATAR_MAX_PIXELS = env_int("AVATAR_MAX_PIXELS", 40_000_000)
ROOM_MAX_MEMBERS = env_int("ROOM_MAX_MEMBERS", 50)
MESSAGE_MAX_LENGTH = 4000
MESSAGES_PER_PAGE = 50
# Consecutive messages from one person at most this far apart share one header (rooms/grouping.py).
MESSAGE_GROUP_SECONDS = 5 * 60
# A search's page of results (rooms/services/search.py), and how many messages a link to
# one message (/r/<room>/m/<seq>/) shows on each side of it.
SEARCH_RESULTS_PER_PAGE = 20
JUMP_CONTEXT = MESSAGES_PER_PAGE // 2

# Live layer (rooms/consumers.py).
# A larger frame from a page gets an error frame from the consumer; the socket stays open.
WS_MAX_FRAME_BYTES = 16 * 1024
# A message larger than this the server does not read at all: it closes the socket with 1009
# (calpico/serve.py hands it to daphne, which would otherwise allow 1 MiB).
WS_MAX_MESSAGE_BYTES = 256 * 1024
WS_FRAMES_PER_10_SECONDS = env_int("WS_FRAMES_PER_10_SECONDS", 60)
# A client further behind than this reloads the page instead of replaying messages.
WS_CATCH_UP_LIMIT = 200
# A resume checks the messages the page shows (oldest_seq to last_seq) for edits: a range
# longer than this reloads the page instead, so a page cannot make the server scan a whole
# room. It is a page's first screen, fifteen more pages of history and a catch-up's worth of
# messages that arrived while it was open (1,000 with the defaults).
WS_RESUME_MAX_RANGE = MESSAGES_PER_PAGE * 16 + WS_CATCH_UP_LIMIT
TYPING_SECONDS = 5
PRESENCE_SECONDS = 60
# On SIGTERM a web process keeps serving, with /readyz answering 503, until the proxy's
# health check has seen that (or this many seconds went by), and only then stops
# (calpico/shutdown.py). 0: stop at once (no proxy, or one that never sends a request to a
# stopped process).
SHUTDOWN_DRAIN_SECONDS = env_float("SHUTDOWN_DRAIN_SECONDS", 0.0)
PRESENCE_BATCH_SECONDS = 1.0

# Rate limits (rooms/ratelimits.py), counted in the cache: across processes with Redis.
# 0 switches one off.
RATE_MESSAGES_PER_10_SECONDS = env_int("RATE_MESSAGES_PER_10_SECONDS", 10)
RATE_MESSAGES_PER_HOUR = env_int("RATE_MESSAGES_PER_HOUR", 300)
RATE_INVITES_PER_HOUR = env_int("RATE_INVITES_PER_HOUR", 20)
RATE_STRANGERS_PER_DAY = env_int("RATE_STRANGERS_PER_DAY", 20)
RATE_FAILED_JOINS_PER_HOUR = env_int("RATE_FAILED_JOINS_PER_HOUR", 20)
# Adding and taking back reactions, together: a quick row clicked through is fine, a script is not.
RATE_REACTIONS_PER_10_SECONDS = env_int("RATE_REACTIONS_PER_10_SECONDS", 20)
RATE_REACTIONS_PER_HOUR = env_int("RATE_REACTIONS_PER_HOUR", 600)
# End-to-end encrypted rooms (docs/e2ee.md): key packages uploaded, and devices' key
# packages claimed to add them to a group, per person and hour.
RATE_E2EE_KEYS_PER_HOUR = env_int("RATE_E2EE_KEYS_PER_HOUR", 100)
RATE_E2EE_CLAIMS_PER_HOUR = env_int("RATE_E2EE_CLAIMS_PER_HOUR", 200)
# Devices (browsers) one person may register, and people in an encrypted room.
E2EE_MAX_DEVICES = env_int("E2EE_MAX_DEVICES", 10)
E2EE_MAX_MEMBERS = env_int("E2EE_MAX_MEMBERS", 10)

# Files attached to messages (rooms/attachments.py): any type, up to this many bytes. A
# picture among them is re-encoded by the avatar pipeline (its pixel limit) and scaled down
# to fit ATTACHMENT_MAX_SIDE pixels a side; any other file is kept as it came.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024)
ATTACHMENT_MAX_SIDE = 2048
# Bytes of files one person may attach per UTC day, in MB (0: no limit): with the message
# limits above, a bound on how fast one account can fill the disk.
RATE_ATTACHMENT_MB_PER_DAY = env_int("RATE_ATTACHMENT_MB_PER_DAY", 1000)
# The largest request body the server takes (calpico/serve.py refuses a larger one with 413
# without storing it): the largest file and room for the text beside it.
REQUEST_MAX_BYTES = ATTACHMENT_MAX_BYTES + 1024 * 1024

# The assistant (assistant/): any OpenAI-compatible API through the openai SDK.
# Without OPENAI_API_KEY the assistant says it is not configured and queues nothing.
OPENAI_API_KEY = env("OPENAI_API_KEY")
# Empty means api.openai.com; e.g. http://127.0.0.1:11434/v1 for Ollama.
OPENAI_BASE_URL = env("OPENAI_BASE_URL")
ASSISTANT_MODEL = env("ASSISTANT_MODEL", "gpt-4o-mini")
ASSISTANT_IMAGE_MODEL = env("ASSISTANT_IMAGE_MODEL", "gpt-image-1")
ASSISTANT_IMAGE_SIZE = env("ASSISTANT_IMAGE_SIZE", "1024x1024")
ASSISTANT_TIMEOUT_SECONDS = env_float("ASSISTANT_TIMEOUT_SECONDS", 60.0)
# How much room history goes into a prompt, in (estimated) tokens, and the reply's cap.
ASSISTANT_CONTEXT_TOKENS = env_int("ASSISTANT_CONTEXT_TOKENS", 6000)
ASSISTANT_MAX_REPLY_TOKENS = env_int("ASSISTANT_MAX_REPLY_TOKENS", 1500)
# Automatically (assistant/decider.py): the model that decides whether to speak (empty:
# ASSISTANT_MODEL), the pause it waits for after the last message, the history it sees,
# and the unprompted replies one room gets per hour at most.
ASSISTANT_DECIDER_MODEL = env("ASSISTANT_DECIDER_MODEL")
ASSISTANT_DECIDE_PAUSE_SECONDS = env_float("ASSISTANT_DECIDE_PAUSE_SECONDS", 3.0)
ASSISTANT_DECIDER_CONTEXT_TOKENS = env_int("ASSISTANT_DECIDER_CONTEXT_TOKENS", 1500)
ASSISTANT_AUTO_REPLIES_PER_HOUR = env_int("ASSISTANT_AUTO_REPLIES_PER_HOUR", 12)
# The rolling summary of a long room (assistant/summary.py): made once this many messages
# are not covered yet, it folds in all but the newest KEEP_RECENT, reading at most
# INPUT_TOKENS of them per run (0 turns summaries off).
ASSISTANT_SUMMARY_AFTER_MESSAGES = env_int("ASSISTANT_SUMMARY_AFTER_MESSAGES", 80)
ASSISTANT_SUMMARY_KEEP_RECENT = env_int("ASSISTANT_SUMMARY_KEEP_RECENT", 40)
ASSISTANT_SUMMARY_INPUT_TOKENS = env_int("ASSISTANT_SUMMARY_INPUT_TOKENS", 4000)
# The most of an attached file (PDF, text, code) the assistant reads, in estimated tokens.
ASSISTANT_FILE_TOKENS = env_int("ASSISTANT_FILE_TOKENS", 3000)
# The longest reading an attached PDF may take (in a process of its own, assistant/pdf_text.py).
ASSISTANT_FILE_SECONDS = env_float("ASSISTANT_FILE_SECONDS", 10.0)
# Web search (assistant/search.py): a SearxNG instance's search URL (its JSON format on),
# e.g. http://127.0.0.1:8888/search; empty: the assistant has no web search.
SEARCH_URL = env("SEARCH_URL")
ASSISTANT_SEARCH_RESULTS = env_int("ASSISTANT_SEARCH_RESULTS", 5)
ASSISTANT_SEARCH_TIMEOUT_SECONDS = env_float("ASSISTANT_SEARCH_TIMEOUT_SECONDS", 10.0)
# Runs (replies and images) one person may trigger per day (UTC).
ASSISTANT_DAILY_RUNS = env_int("ASSISTANT_DAILY_RUNS", 200)
# A room opened with at least this many unread messages offers "Catch me up".
CATCH_UP_MIN_UNREAD = env_int("CATCH_UP_MIN_UNREAD", 15)
# Replies streaming at once in one process; more wait in the queue.
ASSISTANT_MAX_CONCURRENT_RUNS = env_int("ASSISTANT_MAX_CONCURRENT_RUNS", 16)
# Partial text is pushed to the room at most this often.
ASSISTANT_STREAM_INTERVAL = env_float("ASSISTANT_STREAM_INTERVAL", 0.1)
# false: the web processes only queue runs, `manage.py assistant_worker` processes do them.
ASSISTANT_RUNNER_IN_SERVER = env_bool("ASSISTANT_RUNNER_IN_SERVER", True)
# How often a runner looks for runs queued by another process.
ASSISTANT_POLL_SECONDS = env_float("ASSISTANT_POLL_SECONDS", 2.0)
# A streaming run's heartbeat (saved with its text so far), and how often each runner
# looks for runs whose process died.
ASSISTANT_HEARTBEAT_SECONDS = env_float("ASSISTANT_HEARTBEAT_SECONDS", 1.0)
# A running run whose heartbeat is this old is taken to be orphaned (a few missed beats).
ASSISTANT_STALE_SECONDS = env_float("ASSISTANT_STALE_SECONDS", 5.0)

# Durable jobs (jobs/): a runner thread in each web process unless this is false (then
# `manage.py assistant_worker` processes do them); how often it looks for jobs queued
# elsewhere, its heartbeat, and when a silent job counts as orphaned.
JOBS_RUNNER_IN_SERVER = env_bool("JOBS_RUNNER_IN_SERVER", True)
JOBS_POLL_SECONDS = env_float("JOBS_POLL_SECONDS", 2.0)
JOBS_HEARTBEAT_SECONDS = env_float("JOBS_HEARTBEAT_SECONDS", 5.0)
JOBS_STALE_SECONDS = env_float("JOBS_STALE_SECONDS", 30.0)

# Notifications when Calpico is closed (notifications/): Web Push signed with a VAPID key
# (RFC 8292), generated once into var/ unless VAPID_PRIVATE_KEY gives one (PEM, or the
# base64url raw key), and VAPID_SUBJECT, the contact push services may use ("mailto:" or
# an https URL). Browsers allow push only on a secure page: HTTPS, or 127.0.0.1/localhost.
VAPID_PRIVATE_KEY = env("VAPID_PRIVATE_KEY")
VAPID_PRIVATE_KEY_FILE = VAR_DIR / "vapid_private_key.pem"
VAPID_SUBJECT = env("VAPID_SUBJECT", "mailto:" + DEFAULT_FROM_EMAIL)
# The push services the server will send to (host names, a suffix after a dot counts):
# the endpoint comes from the browser, and the server must not be made to post elsewhere.
_PUSH_SERVICES = (
    "fcm.googleapis.com,updates.push.services.mozilla.com,push.services.mozilla.com,"
    "notify.windows.com,push.apple.com"
)
PUSH_SERVICE_HOSTS = env_list("PUSH_SERVICE_HOSTS", _PUSH_SERVICES)
PUSH_TIMEOUT_SECONDS = env_float("PUSH_TIMEOUT_SECONDS", 10.0)
PUSH_TTL_SECONDS = env_int("PUSH_TTL_SECONDS", 86400)
PUSH_MAX_ATTEMPTS = env_int("PUSH_MAX_ATTEMPTS", 5)
# Email for missed direct messages and mentions: after they stay unread this long, at
# most one per hour per person, to those who asked for it and verified their address.
EMAIL_MISSED_AFTER_MINUTES = env_int("EMAIL_MISSED_AFTER_MINUTES", 15)
# Where links in emails point (emails have no request to take the host from).
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# Data exports (privacy/): built under this directory, offered for EXPORT_DAYS.
EXPORTS_ROOT = Path(env("EXPORTS_ROOT", str(VAR_DIR / "exports")))
EXPORT_DAYS = 7
# A deleted account's username waits this long before anyone may take it.
USERNAME_HOLD_DAYS = 30

# Metrics (ops/probes.py): /metrics answers these addresses or networks (as the trusted
# proxy middleware resolved the client) and requests with `Authorization: Bearer
# METRICS_TOKEN`; nobody by default. With several processes, PROMETHEUS_MULTIPROC_DIR
# (read by prometheus-client itself too) is where they all keep their counts.
METRICS_ALLOWED_ADDRESSES = env_networks("METRICS_ALLOWED_ADDRESSES")
METRICS_TOKEN = env("METRICS_TOKEN")
# A process that cannot write there (a command run before the directory exists, the backup
# unit's read-only /run) counts in its own memory instead: metrics off for it, not a crash.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    try:
        Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
        if not os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        warnings.warn(
            f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR} cannot be used ({exc}): "
            "this process's metrics are off (deploy/tmpfiles.d/calpico.conf creates it).",
            RuntimeWarning,
            stacklevel=1,
        )
        PROMETHEUS_MULTIPROC_DIR = ""
        # prometheus-client reads the variable itself when first imported.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        os.environ.pop("prometheus_multiproc_dir", None)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
