"""One Settings object (env prefix PASSHOUSE_, also read from .env), built at the edge."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _networks(value: object) -> object:
    if not isinstance(value, str):
        return value
    networks = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ip_network(item))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or a CIDR network") from None
    return tuple(networks)


# "10.0.0.0/8, 192.168.1.7" in the environment; a bare address is a /32 (or /128).
Networks = Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode, BeforeValidator(_networks)]


def _push_hosts(value: object) -> object:
    if not isinstance(value, str):
        return value
    hosts = []
    for item in filter(None, (part.strip().lower() for part in value.split(","))):
        if "/" in item or ":" in item or item.replace(".", "").isdigit():
            try:
                ip_network(item)
            except ValueError:
                raise ValueError(f"{item!r} is not a host name, IP address or CIDR") from None
        elif not all(label and label.replace("-", "").isalnum() for label in item.split(".")):
            raise ValueError(f"{item!r} is not a host name, IP address or CIDR")
        hosts.append(item)
    return tuple(hosts)


# "proxy.example.com, 127.0.0.1, 10.0.0.0/8": host names, addresses and networks.
PushHosts = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_push_hosts)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PASSHOUSE_", env_file=".env", extra="ignore", validate_default=True
    )

    database_url: str = "sqlite:///passhouse.db"
    # PostgreSQL connections one process may hold for device requests (plus up to 10 for
    # the admin API and the worker). Keep processes x (this + 10) under max_connections.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # Externally visible base URL; a pass's webServiceURL is f"{public_url}/passkit".
    public_url: str = "http://localhost:8000"
    # Bootstrap admin API key (accepted in addition to keys made with `api-key create`).
    admin_token: SecretStr | None = None
    # Encrypts private keys at rest. Dev mode generates one into data_dir on first start.
    secret_key: SecretStr | None = None
    # Where dev mode keeps its generated secret key, admin token and throwaway certificates.
    data_dir: Path = Path(".passhouse")
    # With no pass type configured, create a local CA and pass certificate on start.
    dev_mode: bool = True

    apns_url: str = "https://api.push.apple.com"
    # Extra trusted roots for the APNs connection (a test server, an intercepting proxy).
    apns_ca_file: Path | None = None
    # Seconds a push stays valid at APNs for an offline device (apns-expiration).
    apns_expiration_seconds: int = Field(default=86_400, ge=0)
    apns_connections_per_pass_type: int = Field(default=2, ge=1, le=64)
    apns_streams_per_connection: int = Field(default=200, ge=1, le=1000)
    apns_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # A push with no answer by then is retried with backoff.
    apns_request_timeout_seconds: float = Field(default=10.0, gt=0)
    # Attempts per push before it is recorded as failed; a 410 is never retried. With the
    # backoff below (1 s doubling, capped at 15 min), 12 attempts ride out ~45 min of outage.
    push_max_attempts: int = Field(default=12, ge=1)
    push_backoff_base_seconds: float = Field(default=1.0, gt=0)
    push_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # Each push makes a device call back at least twice, so fan-out is paced to what the
    # web tier can answer. 0 means unlimited.
    push_rate_per_second: float = Field(default=5_000.0, ge=0)
    push_rate_per_pass_type: float = Field(default=0.0, ge=0)
    push_batch_size: int = Field(default=500, ge=1, le=10_000)
    push_poll_interval_seconds: float = Field(default=0.5, gt=0)
    # SQLite has no LISTEN/NOTIFY: an idle worker polls the (indexed) due query this often.
    push_idle_poll_seconds: float = Field(default=0.05, gt=0)
    # A claimed push is hidden from other workers this long. While a batch is in flight
    # the worker records its answers every second and renews the lease of the rest every
    # third of it, so a lease can be short: a worker killed mid-send leaves its pushes to
    # another worker within this time, and only those it had on the wire (or answered in
    # its last second) are sent twice.
    push_lease_seconds: float = Field(default=10.0, gt=0)
    # Batches a worker keeps in flight at once (claiming one while others are sent).
    push_concurrency: int = Field(default=4, ge=1, le=64)
    # How long push attempts are kept for the admin API and stats.
    push_attempts_keep_seconds: int = Field(default=7 * 86_400, ge=60)

    # Bounds for POST /v1/log: bytes per request, messages kept, requests per minute per IP.
    device_log_max_bytes: int = 64 * 1024
    device_log_keep: int = 10_000
    device_log_rate_per_minute: int = 120
    max_request_bytes: int = 16 * 1024 * 1024

    # --- hostile input (issue 7, section 2) ---
    # Nesting levels allowed in any JSON we accept (admin API, device endpoints, template
    # files, CLI). Real pass.json files and pass data stay under 10; the cap keeps stored
    # data readable by everything that walks it later (the API's serializer stops at 255).
    json_max_depth: int = Field(default=32, ge=2, le=64)  # le = pkpass.json_input.MAX_DEPTH_CAP
    # Template zips and folders are measured by the bytes they inflate to, never by what
    # their headers claim. 1,000 files fit 40 localizations with a full set of images
    # each; a pass with far more is slow to sign and to download on every device.
    template_max_files: int = Field(default=1_000, ge=1, le=100_000)
    # Apple's images are small (a background@3x PNG is well under 1 MB); 20 MB unpacked
    # in all is also what keeps each signed .pkpass a reasonable download.
    template_max_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    template_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # --- abuse limits on the device endpoints (ADR 0010) ---
    # Devices one pass can be registered on. Most passes live on one to three devices, but
    # a coupon shared under one serial can legitimately reach thousands; 10,000 keeps those
    # working while bounding what one change fans out to (2 s of pushes at the default
    # pace) and what a leaked share link can fill. 0 means no cap.
    registrations_per_pass: int = Field(default=10_000, ge=0)
    # Register calls per client address (per /64 for IPv6) per minute. A phone registers
    # each pass once when it is added; 120 lets a household or an office behind one
    # address through, and a crowd behind one NAT gets in on Wallet's retries. 0 = no limit.
    registration_rate_per_minute: int = Field(default=120, ge=0)
    # Direct peers (addresses or CIDRs, comma-separated) whose forwarding header names the
    # client. None by default: behind no proxy, a forwarding header is whatever the client
    # wrote, and trusting it would let anyone dodge the per-client limits.
    trusted_proxies: Networks = ()
    # The header those proxies set; only that one is read (the other may be forged).
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # --- push worker watchdog (issue 7 section 1) ---
    # Pushes due but none sent (nor even tried) for this long: the push worker is stalled
    # or not running. Logged as an error by the worker, `stalled` in GET /api/v1/push/stats,
    # passhouse_push_stalled in /metrics. A healthy worker is never silent that long: its
    # longest wait is a connect plus a request timeout (20 s by default); a minute is still
    # short enough to page someone before anyone misses an update.
    push_stall_seconds: float = Field(default=60.0, gt=0)
    # --- database faults and startup checks (issue 7, section 5) ---
    # Seconds to wait for a new database connection before giving up (a 503 for a
    # request, one sentence at start). A database behind a network partition drops
    # packets instead of refusing: without this every request would wait the driver's
    # 60 s. 10 s is far above a healthy connect (milliseconds) yet below a client's patience.
    database_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # --- HTTP edge and web processes (`passhouse serve`) ---
    # Request line plus headers of one request (431 above). Wallet sends well under 2 kB;
    # 64 kB leaves room for a browser's cookies and a proxy's forwarded headers.
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Header fields per request (431 above); browsers send about 20, Wallet fewer.
    http_max_headers: int = Field(default=100, ge=8)
    # A request's headers must arrive this soon after its first byte (for the first
    # request: after the connection opens), or it gets a 408 and the connection closes.
    # Phones on a poor network still send 2 kB in well under a second.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    # The whole body must arrive this soon after the headers: 60 s carries the largest
    # body accepted (max_request_bytes, 16 MB) at about 2.2 Mbit/s.
    http_body_timeout_seconds: float = Field(default=60.0, gt=0)
    # Open connections per web process; beyond it new ones get a 503 (logged). Kept under
    # the open-files limit, which serve raises towards it.
    http_max_connections: int = Field(default=2048, ge=1)
    # After SIGTERM, requests in flight get this long before what is left is closed;
    # below Kubernetes' default 30 s grace period, so we end before its SIGKILL.
    http_shutdown_timeout_seconds: int = Field(default=25, ge=1, le=3600)
    # Web processes of `passhouse serve` (its --workers); unset: one per core the process
    # may use, or 1 in dev mode.
    web_workers: int | None = Field(default=None, ge=1, le=64)

    # --- PassNinja-compatible API (/v1) ---
    # X-ACCOUNT-ID the PassNinja SDKs must send, when set. Unset by default: a passhouse
    # server is one account and X-API-KEY alone authenticates, so any value is accepted
    # and an issuer keeps the account id already in their configuration.
    passninja_account_id: str | None = None

    # --- expiry and retirement (issue 9, ADR 0020) ---
    # Void a pass when its rendered expirationDate passes (a new version and a push, done
    # by the workers). Off by default: Wallet already shows an expired pass as expired, and
    # voiding is for good (a voided pass can no longer change).
    void_expired: bool = False
    # Days a pass stays voided or expired before it is retired: its devices get a last
    # file without webServiceURL (so Wallet stops asking), its registrations are removed,
    # and nothing is pushed for it again. 30 days leaves time to renew an expired pass.
    retention_days: float = Field(default=30.0, ge=0)
    # --- webhooks (issue 9, ADR 0018) ---
    # Allow webhook URLs with http:// and ones that resolve to loopback, private, link-local
    # or other non-public addresses. Off: a key holder cannot make the server probe the
    # internal network. For local development and tests.
    webhooks_allow_private: bool = False
    # A delivery succeeds on a 2xx within this time; anything else is retried.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Retries go on (exponential backoff with jitter) until an event is this old, then the
    # delivery is recorded as failed. At least a day: a receiver down over a night catches up.
    webhook_retry_seconds: int = Field(default=24 * 3600, ge=60)
    webhook_backoff_base_seconds: float = Field(default=10.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    # An endpoint whose every attempt has failed for this long is disabled (logged, and
    # flagged in the API and the dashboard) until someone enables it again.
    webhook_disable_after_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    # Requests in flight to one endpoint at once (one event per request).
    webhook_concurrency: int = Field(default=64, ge=1, le=1000)
    # A claimed delivery is hidden from other workers this long; a worker killed mid-send
    # leaves it to be sent again once the lease runs out. Above the timeout, with margin.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # Delivered and failed deliveries, and their events, are kept this long for the API.
    webhook_keep_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # --- bulk jobs and idempotent calls (issue 9) ---
    # A CSV import's file: bytes (also bounded by max_request_bytes for uploads), data rows
    # and columns. A 16 MB CSV of a few short columns holds ~300,000 rows; 1,000,000 rows
    # bound what one job stages in the database.
    import_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    import_max_rows: int = Field(default=1_000_000, ge=1)
    import_max_columns: int = Field(default=200, ge=1, le=10_000)
    # Rows (import) or passes (bulk update) per transaction of a job: a crash repeats at
    # most one uncommitted chunk, and on SQLite other writers wait at most one chunk.
    job_chunk_size: int = Field(default=1_000, ge=1, le=10_000)
    # A worker running a job renews its lease with every chunk; a worker killed outright
    # leaves the job to another worker once the lease runs out.
    job_lease_seconds: float = Field(default=30.0, gt=0)
    # How often an idle worker looks for queued jobs.
    job_poll_seconds: float = Field(default=0.5, gt=0)
    # Finished jobs (and their failed rows) are kept this long for GET /api/v1/jobs.
    job_keep_seconds: int = Field(default=7 * 86_400, ge=60)
    # An Idempotency-Key answers its first answer again for this long (24 h, as Stripe).
    idempotency_keep_seconds: int = Field(default=86_400, ge=60)

    # --- landing page /p/{share id} (issue 11) ---
    # The operator's brand on it: a logo (PNG, JPEG or SVG file, at most 512 kB) shown
    # above the pass, a name beside it, and the page's colours (#rrggbb).
    landing_logo_file: Path | None = None
    landing_brand_name: str | None = Field(default=None, max_length=200)
    landing_background_color: str = Field(default="#f5f5f7", pattern=r"^#[0-9a-fA-F]{6}$")
    landing_text_color: str = Field(default="#1d1d1f", pattern=r"^#[0-9a-fA-F]{6}$")
    # Apple's and Google's official "Add to ... Wallet" artwork may not ship in the
    # package: put their files here (add-to-apple-wallet-<lang>.svg and
    # add-to-google-wallet-<lang>.svg, lang en, de, fr or es; .png also read). Without
    # them the page shows a plain black button with the same words.
    wallet_button_dir: Path | None = None
    # --- Android wallet apps: push relays (issue 12, ADR 0017) ---
    # Hosts PassWallet's `pushServiceUrl` may name (comma-separated host names, IP
    # addresses or CIDRs). The URL comes from whoever holds a pass's public token, so
    # nothing else is ever called, and a name on the list may only resolve to public
    # addresses: loopback and private ones must be listed as addresses. The default is
    # the push service PassWallet's developer page publishes.
    passwallet_push_hosts: PushHosts = ("proxy.ravensoft.co.uk",)
    # Wallet Passes (io.walletpasses.android): the key is optional (without one the relay
    # rate-limits the issuer).
    relay_walletpasses_url: str = "https://walletpasses.appspot.com"
    relay_walletpasses_api_key: SecretStr | None = None
    # Pass2U Wallet: the push API needs a key (apply on pass2u.net); without one its
    # pushes are skipped, kept in the queue, and shown in GET /api/v1/push/stats.
    relay_pass2u_url: str = "https://api.passesalliance.com"
    relay_pass2u_api_key: SecretStr | None = None
    # Passworks Wallet: the "Wallet App Key"; without one, as for Pass2U.
    relay_passworks_url: str = "https://wallet.passworks.io"
    relay_passworks_api_key: SecretStr | None = None
    # Extra trusted roots for the relays' HTTPS (a test server, an intercepting proxy).
    relay_ca_file: Path | None = None
    relay_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Tokens per relay call, for the relays that take lists (Pass2U takes at most 1,000).
    relay_batch_size: int = Field(default=500, ge=1, le=1000)

    # --- Google Wallet (issue 12) ---
    # Google's REST API, save page and callback root keys; tests point them at a fake. The
    # token URL is each service account key file's token_uri.
    google_api_url: str = "https://walletobjects.googleapis.com"
    google_save_url: str = "https://pay.google.com/gp/v/save/"
    google_callback_keys_url: str = "https://pay.google.com/gp/m/issuer/keys"
    # Extra trusted roots (PEM) for those hosts, as apns_ca_file for APNs.
    google_ca_file: Path | None = None
    # Google allows 20 requests per second; 15 leaves room for a second tool or a retry
    # burst. 0 sends as fast as the worker can (for tests and benchmarks).
    google_rate_per_second: float = Field(default=15.0, ge=0)
    # Object syncs in flight at once per worker (each is one or two requests).
    google_concurrency: int = Field(default=16, ge=1, le=256)
    # Seconds per request to Google before it counts as a connection error (retried).
    google_request_timeout_seconds: float = Field(default=20.0, gt=0)

    # --- sign ahead (issue 8, ADR 0023) ---
    # Each web process signs, in the background, the current files of passes whose pushes
    # are queued, so the downloads that follow the pushes are cached reads.
    sign_ahead: bool = True

    # --- access log (issue 8) ---
    # One line per HTTP request on stdout (web/access_log.py: preformatted, written in
    # batches), when the log level is info or lower.
    access_log: bool = True

    @field_validator("relay_walletpasses_url", "relay_pass2u_url", "relay_passworks_url")
    @classmethod
    def _relay_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def web_service_url(self) -> str:
        return f"{self.public_url}/passkit"
