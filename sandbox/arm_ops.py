"""Operation timing as recorded: how long gateway operations take and which Retry-After NRP
sends while they run. Pure (no I/O, no clock).

Every number names its recording (tests/data/recorded/SOURCES.md). Only recorders that keep
response headers can show Retry-After: azure-sdk-for-net's test proxy does
(net_ag_backend_health_v2.json); azure-cli's testsdk drops it (`ReplayableTest.FILTER_HEADERS`).
Durations are the span between a write's response and its first `Succeeded` poll (`date`
headers, which every recorder here keeps).
"""

from __future__ import annotations

# Retry-After on the gateway PUT (net_ag_backend_health_v2.json, create PUT 201 03:08:56: 5). No
# header-keeping recording shows an update PUT; the sandbox sends the same.
PUT_RETRY_AFTER = 5.0
# On the operation's status polls, by poll: 1, 2, 2, 4, 4, 8, 8, 16, 16, then 10 on every
# later poll (net_ag_backend_health_v2.json, 03:08:57 to 03:16:04). `Succeeded` carries none.
POLL_RETRY_AFTER = (1.0, 2.0, 2.0, 4.0, 4.0, 8.0, 8.0, 16.0, 16.0)
POLL_RETRY_AFTER_LATER = 10.0
# Backend health: the POST's 202 and each 202 poll say 10; the final 200 says none
# (net_ag_backend_health_v2.json 03:17:23 / 03:17:23 / 03:17:33).
HEALTH_RETRY_AFTER = 10.0

# Recorded durations, seconds.
RECORDED_SECONDS: dict[str, float] = {
    # v2 update: trusted root added, PUT 05:25:58 -> Succeeded 05:26:20 (cli_ag_root_cert_v2.json)
    "v2_update": 22.0,
    # v2 create: PUT 03:08:56 -> Succeeded 03:16:36 (net_ag_backend_health_v2.json)
    "v2_create": 460.0,
    # WAF_v2 create with Key Vault certificate: 06:13:42 -> 06:28:28
    # (java_ag_kv_sslcert_identity.json); the slowest gateway operation in any recording here.
    "waf_v2_create": 886.0,
    # backend health, POST -> 200: 10 s (net_ag_backend_health_v2.json 03:17:23 -> 03:17:33),
    # 11 s (cli_ag_backend_health_v2.json 00:43:09 -> 00:43:20)
    "health": 11.0,
}
# No recording here shows a v1 update's end (cli_ag_auth_cert_v1.json's --no-wait PUTs are not
# polled), so the `recorded` profile gives every write the slowest recorded operation.
SLOWEST_WRITE = max(RECORDED_SECONDS["v2_update"], RECORDED_SECONDS["waf_v2_create"])


def poll_retry_after(polls: int) -> float:
    """The recorded Retry-After on the status poll answered after `polls` earlier ones."""
    return POLL_RETRY_AFTER[polls] if polls < len(POLL_RETRY_AFTER) else POLL_RETRY_AFTER_LATER


def retry_after(recorded: float, scale: float, fixed: float | None, remaining: float) -> float:
    """Seconds to send: `fixed` when set, else the recorded value times `scale`; never more than
    the operation has left (a sandbox choice: a scenario's own pacing, shorter than Azure's,
    stays as set; NRP's value does not know when an operation ends, so near its end the real
    header may overshoot)."""
    value = fixed if fixed is not None else recorded * scale
    return max(0.0, min(value, remaining))


def format_seconds(seconds: float) -> str:
    """Whole seconds, rounded down, as NRP writes them ("5"). The generated SDK parses the header
    as an integer (azure-mgmt-network `_backend_health_initial`: `deserialize("int", ...)`), so
    a compressed timeline sends "0" and clients pace by their own polling interval."""
    return str(int(max(seconds, 0.0)))
