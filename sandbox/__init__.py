"""The local Azure for the bot: ARM emulator, ILB-ASE-like TLS backends, managed identity,
Key Vault, Azurite and a local Functions runner.

Run `python -m sandbox --help`; the scenario format and env file are documented in docs/sandbox.md.

Where things are (each module's docstring cites the Azure behaviour it imitates):

- Lifecycle and scenarios: `runtime` (start and stop a world, the env file), `scenario` (the
  JSON format), `scenarios/` (built-in cases), `fleet` (thousands of generated gateways across
  subscriptions), `pki` (certificates made at start-up).
- Azure control plane: `arm` (Resource Manager over HTTPS: routing, authentication, GET and
  list), split by concern into `arm_core` (state, lookups, read-only output), `arm_writes` (the
  PUT and its operation), `arm_health` (backend health), `arm_ops` (recorded durations and
  Retry-After), `arm_backrefs` (computed back-references), `arm_versions` (registered
  api-versions), `arm_http` (the HTTPS server); `arm_validation` (PUT validation, ARM-shaped
  errors), `faults` (failures on
  request), `health_rules` (how the emulated gateway judges a backend), `rbac` (role assignments
  read from infra/, enforced as ARM does), `permissions` (the caller's own permissions, from
  the same roles), `identity` (the managed-identity endpoint),
  `metrics` (Azure Monitor's metrics batch API), `keyvault` (Key Vault certificates).
- The data plane the gateway talks to: `backends` (TLS servers that behave like an ILB ASE).
- The function app's world: `azurite` (Microsoft's storage emulator), `funcrunner` (serves
  function_app's triggers locally), split by concern into `funcrunner_index` (bindings and
  host.json), `funcrunner_routes` (route templates), `funcrunner_http` (HTTP triggers),
  `funcrunner_queues` (queue triggers and outputs), `funcrunner_timers` (timer triggers);
  `mcp_host` (the MCP extension's webhook), `easyauth` (App Service Authentication: sign-in
  sessions of sandbox users with Entra object ids, the principal headers), `alerts`
  (common-schema alerts as an action group posts them).
- Demos: `demo` (`python -m sandbox demo`), `bot_demo` (`make demo`: the bot end to end).
"""
