"""Small programs the README's examples run with (its code blocks are tested)."""
