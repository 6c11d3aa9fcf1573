"""Names the README's peers example uses: a draft and a critique step."""

draft = "Leases fence out stale writers."


def critique(text: str) -> str:
    """Answer a message with a (very short) critique of it."""
    return f"re: {text[:40]}"
