"""``distkv-gateway gpio`` as a process next to a ``distkv server`` process: a config
error is one line before anything connects; with the simulated chip, input levels
reach the tree and an output follows its entry (seen through the tree)."""

from __future__ import annotations

import pytest
import trio

from distkv.testing.process import ServerProcess, ok, read_line

pytestmark = pytest.mark.slow

GPIO = (
    "-C gateways.gpio.simulated=true "
    "-C gateways.gpio.inputs.button.line=22 "
    "-C gateways.gpio.outputs.relay.line=17 "
    "-C gateways.gpio.outputs.relay.follow=home.light "
)


async def run(srv: ServerProcess, cmd: str):
    return await trio.to_thread.run_sync(srv.run, cmd)


async def test_gpio_gateway_process(tmp_path):
    srv = ServerProcess(tmp_path, "gpionode")
    try:
        await trio.to_thread.run_sync(srv.start, "-i", "Testing")
        bad = await run(srv, "distkv-gateway -C gateways.gpio.inputs.button.lien=3 gpio")
        assert bad.returncode == 1
        assert bad.stderr.count("\n") == 1 and "gateways.gpio.inputs.button.lien" in bad.stderr

        with srv.spawn(f"exec distkv-gateway {GPIO} gpio") as proc:
            assert await trio.to_thread.run_sync(read_line, proc.stdout) == "Running.\n"
            assert ok(await run(srv, "distkv client data gpio.button")) == "false\n"
            ok(await run(srv, "distkv client data home.light set -v : true"))
            with trio.fail_after(20):
                while (await run(srv, "distkv client data gpio.relay")).stdout != "true\n":
                    await trio.sleep(0.1)
            proc.terminate()
            assert await trio.to_thread.run_sync(proc.wait, 10) == 0
    finally:
        srv.stop()
