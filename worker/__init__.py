"""The queue side of plangate: settings, the producer client, the arq worker, the LLM call and the CLI."""

from worker.client import PlanClient
from worker.errors import BadRequest, JobNotFound, PlangateError, QueueUnavailable, WaitTimeout

__version__ = "0.1.0"

__all__ = ["BadRequest", "JobNotFound", "PlanClient", "PlangateError", "QueueUnavailable", "WaitTimeout"]
