#!/usr/bin/env python3
"""A TLS front for a plain-HTTP test store, so uploads are tested over https.

    tls_relay.py --port PORT --cert leaf.pem --key leaf.key --upstream 127.0.0.1:8014

Takes TLS connections on 127.0.0.1:PORT with the given certificate and relays
the decrypted bytes both ways to the upstream, unchanged: the store sees the
Host the client signed. Stops on SIGTERM.
"""

import argparse
import asyncio
import ssl


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--upstream", required=True, help="host:port of the plain-HTTP store")
    args = parser.parse_args()
    upstream_host, upstream_port = args.upstream.rsplit(":", 1)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    async def relay(client_reader, client_writer):
        try:
            store_reader, store_writer = await asyncio.open_connection(upstream_host, int(upstream_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, store_writer), pipe(store_reader, client_writer))

    server = await asyncio.start_server(relay, "127.0.0.1", args.port, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
