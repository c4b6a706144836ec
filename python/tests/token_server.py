# SPDX-License-Identifier: MIT
"""A token-owning process for test_net.py, driven over stdin/stdout.

    python token_server.py ADDRESS-AS-JSON [AUTHKEY]

Serves CancelToken('base') as 'get_cancel_token' and CancelToken('other')
as 'get_other' with the documented Manager API (serve_forever() on a
thread), prints "READY <address as JSON>", then answers one command per
line: "trigger" (prints "ok"), "triggered" (prints True/False), "cause"
(prints the name of base.triggered_token), "wait" (prints "ok" once base is
triggered), "quit" (stops serving and exits).
"""

import json
import sys
import threading

from cancel_token import BaseCancelTokenManager, CancelToken, CancelTokenProxy


def main():
    address = json.loads(sys.argv[1])
    if isinstance(address, list):
        address = tuple(address)
    authkey = sys.argv[2].encode() if len(sys.argv) > 2 else None

    class TokenManager(BaseCancelTokenManager):
        pass

    base = CancelToken('base')
    other = CancelToken('other')
    TokenManager.register('get_cancel_token', callable=lambda: base,
                          proxytype=CancelTokenProxy)
    TokenManager.register('get_other', callable=lambda: other)
    manager = TokenManager(address=address, authkey=authkey)
    server = manager.get_server()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    print('READY', json.dumps(manager.address), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'trigger':
            base.trigger()
            print('ok', flush=True)
        elif cmd == 'triggered':
            print(base.triggered, flush=True)
        elif cmd == 'cause':
            print(base.triggered_token.name, flush=True)
        elif cmd == 'wait':
            done = threading.Event()
            reg = base._on_trigger(done.set)
            done.wait()
            reg.close()
            print('ok', flush=True)
        elif cmd == 'quit':
            break
    server.stop_event.set()
    thread.join()


if __name__ == '__main__':
    main()
