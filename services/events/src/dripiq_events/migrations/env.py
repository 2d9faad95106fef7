from dripiq_common.migrations import run_env
from dripiq_events.models import metadata

run_env(metadata)
