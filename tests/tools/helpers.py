"""Small helpers shared by the tool-reliability tests: the durable tests' own."""

from tests.durable.helpers import of_type as of_type
from tests.durable.helpers import until_status as until_status
