"""The api-versions Microsoft.Network registers for `applicationGateways`, and ARM's refusal of
any other.

Up to 2023-09-01 the list is the provider registration as recorded
(tests/data/recorded/ps_network_provider_api_versions.json: GET
/subscriptions/{s}/providers/Microsoft.Network, `resourceTypes[applicationGateways].apiVersions`,
2023-12-12). Later versions are the stable folders of Azure/azure-rest-api-specs that hold
`applicationGateway.json` (specification/network/resource-manager/Microsoft.Network/stable/ and,
from 2025-05-01, .../Microsoft.Network/Network/stable/; tests/data/recorded/SOURCES.md). A
version in neither is refused with ARM's 400 NoRegisteredProviderFound, whose message shape is
Azure/azure-cli#12456's (and #28496's): location, version, type, the supported versions
ascending, the supported locations.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.arm_validation import ArmError

RECORDED = [
    "2014-12-01-preview",
    "2015-05-01-preview",
    "2015-06-15",
    "2016-03-30",
    "2016-06-01",
    "2016-07-01",
    "2016-08-01",
    "2016-09-01",
    "2016-10-01",
    "2016-11-01",
    "2016-12-01",
    "2017-03-01",
    "2017-04-01",
    "2017-06-01",
    "2017-08-01",
    "2017-09-01",
    "2017-10-01",
    "2017-11-01",
    "2018-01-01",
    "2018-02-01",
    "2018-03-01",
    "2018-04-01",
    "2018-05-01",
    "2018-06-01",
    "2018-07-01",
    "2018-08-01",
    "2018-10-01",
    "2018-11-01",
    "2018-12-01",
    "2019-02-01",
    "2019-04-01",
    "2019-06-01",
    "2019-07-01",
    "2019-08-01",
    "2019-09-01",
    "2019-11-01",
    "2019-12-01",
    "2020-01-01",
    "2020-03-01",
    "2020-04-01",
    "2020-05-01",
    "2020-06-01",
    "2020-07-01",
    "2020-08-01",
    "2020-11-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-04-01",
    "2021-05-01",
    "2021-06-01",
    "2021-08-01",
    "2021-12-01",
    "2022-01-01",
    "2022-05-01",
    "2022-07-01",
    "2022-09-01",
    "2022-11-01",
    "2023-02-01",
    "2023-04-01",
    "2023-05-01",
    "2023-06-01",
    "2023-09-01",
]
FROM_SPECS = [
    "2023-11-01",
    "2024-01-01",
    "2024-03-01",
    "2024-05-01",
    "2024-07-01",
    "2024-10-01",
    "2025-01-01",
    "2025-03-01",
    "2025-05-01",
    "2025-07-01",
    "2025-09-01",
    "2026-01-01",
    "2026-03-01",
]
APPLICATION_GATEWAY_VERSIONS: tuple[str, ...] = tuple(RECORDED + FROM_SPECS)
_KNOWN = frozenset(APPLICATION_GATEWAY_VERSIONS)


def check(version: str | None, location: str, locations: Iterable[str]) -> None:
    """ARM's answer to a request for applicationGateways at `version` (None: no api-version)."""
    if not version:
        # ARM's wording for a request without the parameter (our inference: no recording).
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version in _KNOWN:
        return
    supported = ", ".join(APPLICATION_GATEWAY_VERSIONS)
    where = ", ".join(sorted({loc for loc in locations if loc}) or [location])
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version "
        f"'{version}' for type 'applicationGateways'. The supported api-versions are "
        f"'{supported}'. The supported locations are '{where}'.",
    )
