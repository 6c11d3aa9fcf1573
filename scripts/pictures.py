"""Regenerate docs/pictures from docs/pictures/research-run.jsonl (see scripts/pictures)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from phalanx.journal import store_from_url
from phalanx.observe import dot_to
from phalanx.testing import load_recorded, read_recorded

ROOT = Path(__file__).resolve().parents[1]
PICTURES = ROOT / "docs" / "pictures"
RECORDED = PICTURES / "research-run.jsonl"
#: The recorded demo run's id (fixed, so the README can name it).
RUN_ID = "research-demo"
PHALANX = str(Path(sys.executable).with_name("phalanx"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANX_", "OPENAI_"))}
    return env


def record() -> None:
    """Run the research demo once and keep its whole journal as JSON lines."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.db"
        subprocess.run(
            [PHALANX, "demo", "--json", "--run-id", RUN_ID, "--store", url],
            check=True,
            env=_env(),
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )

        async def dump() -> list[str]:
            store = store_from_url(url)
            await store.open()
            try:
                lines, after = [], 0
                while page := await store.read_all(after=after, limit=1000):
                    lines += [json.dumps(e.to_json()) for e in page]
                    after = page[-1].position
                return lines
            finally:
                await store.close()

        RECORDED.write_text("\n".join(asyncio.run(dump())) + "\n", "utf-8")


def generate(out: Path) -> list[Path]:
    """Write every picture into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/recorded.db"
        asyncio.run(load_recorded(url, read_recorded(RECORDED)))
        made = []
        for command, name in (
            ("timeline", "research-timeline.svg"),
            ("diagram", "research-topology.svg"),
        ):
            path = out / name
            subprocess.run(
                [PHALANX, command, RUN_ID, "--store", url, "-o", str(path)],
                check=True,
                env=_env(),
                cwd=tmp,
                stderr=subprocess.DEVNULL,
            )
            made.append(path)
    architecture = out / "architecture.svg"
    architecture.write_bytes(dot_to((PICTURES / "architecture.dot").read_text("utf-8"), "svg"))
    made.append(architecture)
    return made


def main() -> int:
    """Regenerate (default), check (`--check`) or re-record and regenerate (`--record`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a picture is stale")
    parser.add_argument("--record", action="store_true", help="re-record the demo run first")
    args = parser.parse_args()
    if args.record:
        record()
    if not args.check:
        for path in generate(PICTURES):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [
            path.name
            for path in generate(Path(tmp))
            if not (PICTURES / path.name).exists()
            or (PICTURES / path.name).read_bytes() != path.read_bytes()
        ]
    if stale:
        print(f"stale pictures: {', '.join(stale)}; run scripts/pictures and commit them")
        return 1
    print("pictures are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
