"""Tools agents call: declaration, schemas and validation."""

from ._tool import Tool as Tool
from ._tool import tool as tool
