from dripiq_common.migrations import run_env
from dripiq_scheduler.models import metadata

run_env(metadata)
