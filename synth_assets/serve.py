"""`make serve` / `make serve-stop`: the generation service for the configured model.

    python -m synth_assets.serve          # start it, or find it already serving
    python -m synth_assets.serve --stop   # stop it
    python -m synth_assets.serve --if-used  # start it only with the vllm_serve backend (make ui)

The service (synth_assets/generation/service.py) is `vllm serve` from
SYNTH_ASSETS_VLLM_EXECUTABLE for SYNTH_ASSETS_MODEL with the configured engine options,
recorded in $DAGSTER_HOME; runs with SYNTH_ASSETS_GENERATION_BACKEND=vllm_serve use it
and never start a second one. It stops after SYNTH_ASSETS_SERVICE_IDLE_S seconds unused.
"""

from __future__ import annotations

import argparse
import sys

from synth_assets.generation.service import ServiceError, acquire, stop
from synth_assets.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stop", action="store_true", help="stop the running service")
    parser.add_argument("--if-used", action="store_true",
                        help="start it only when SYNTH_ASSETS_GENERATION_BACKEND is vllm_serve")
    args = parser.parse_args(argv)
    generation = Settings.from_env().resources["generation"]
    if args.if_used and generation.backend != "vllm_serve":
        return 0
    if not generation.instance_dir:
        print("synth_assets serve: set DAGSTER_HOME (the Makefile does)", file=sys.stderr)
        return 2
    try:
        if args.stop:
            print(stop(generation.instance_dir))
            return 0
        if not generation.model:
            print("synth_assets serve: set SYNTH_ASSETS_MODEL to the model to serve", file=sys.stderr)
            return 2
        # Taken only to wait until the server is healthy: released at once, so the idle
        # time counts from now.
        acquire(generation.instance_dir, generation.service_spec(), idle_s=generation.service_idle_s).release()
    except ServiceError as error:
        print(f"synth_assets serve: {error}", file=sys.stderr)
        return 1
    if generation.backend != "vllm_serve":
        print(f"note: SYNTH_ASSETS_GENERATION_BACKEND is {generation.backend!r}; runs use the service "
              "only with vllm_serve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
