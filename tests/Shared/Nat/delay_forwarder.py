"""A TCP forwarder that holds every byte for a fixed delay each way: the NAT bench's emulated link delay
(this machine's kernel has no netem and nftables cannot delay). Usage: delay_forwarder.py LISTEN_IP LISTEN_PORT
TARGET_IP TARGET_PORT DELAY_MS. Prints "ready" once listening; bytes keep their order and half-closes pass through."""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay, data))
    finally:
        queue.put_nowait((0.0, None))
        await delivering


async def main(listen_ip, listen_port, target_ip, target_port, delay_ms):
    delay = float(delay_ms) / 1000.0

    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(target_ip, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, target_writer, delay), pump(target_reader, client_writer, delay), return_exceptions=True)
        client_writer.close()
        target_writer.close()

    server = await asyncio.start_server(handle, listen_ip, int(listen_port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
