"""Drives ohfp through a client that openapi-python-client generated from openapi/openapi.json
(the package `ohfp_client` on PYTHONPATH): registers a simulated strategy, runs an operation on
it, reads its metrics. Usage: generated_client.py BASE_URL TOKEN. Exits non-zero on any
mismatch."""

import sys
import time

from ohfp_client import AuthenticatedClient
from ohfp_client.api.providers import (
    execute_provider_operation,
    get_provider_metrics_by_name,
    get_provider_strategy,
    register_provider_strategy,
)
from ohfp_client.models import (
    ExecuteCommand,
    OperationResult,
    OperationType,
    RegisterCommand,
    RegisterCommandStrategyConfig,
    StrategyMetrics,
    StrategyView,
)

base, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

config = RegisterCommandStrategyConfig.from_dict(
    {"region": "sim-gen-1", "latency_ms": 0, "capacity": 10, "boot_seconds": 0.2}
)
created = register_provider_strategy.sync_detailed(
    client=client,
    body=RegisterCommand(
        provider_type="simulated", strategy_name="sim-generated", strategy_config=config, priority=7
    ),
)
assert created.status_code == 201, (created.status_code, created.content)
assert isinstance(created.parsed, StrategyView), created.parsed
assert created.parsed.strategy_name == "sim-generated"
assert created.parsed.priority == 7
assert created.parsed.strategy_config["region"] == "sim-gen-1"

view = get_provider_strategy.sync(name="sim-generated", client=client)
assert isinstance(view, StrategyView), view
assert view.provider_type == "simulated"

for _ in range(3):
    result = execute_provider_operation.sync(
        client=client,
        body=ExecuteCommand(
            operation_type=OperationType.HEALTH_CHECK, strategy_override="sim-generated"
        ),
    )
    assert isinstance(result, OperationResult), result
    assert result.success, result.to_dict()

# Metrics may be recorded a moment after the answer: poll, with a generous deadline.
deadline = time.monotonic() + 30
while True:
    metrics = get_provider_metrics_by_name.sync(name="sim-generated", client=client)
    assert isinstance(metrics, StrategyMetrics), metrics
    if metrics.totals.count >= 3 or time.monotonic() > deadline:
        break
    time.sleep(0.1)
assert metrics.strategy_name == "sim-generated"
assert metrics.totals.count == 3, metrics.to_dict()
assert metrics.totals.successes == 3, metrics.to_dict()
print("generated client ok:", metrics.totals.to_dict())
