#!/usr/bin/env python3
"""The kernel's own cost of one SSE delivery: CPU per `write` of a frame to loopback TCP
sockets whose reader waits on the other core, as each watcher's client does. A server that
writes each watcher's frame with one syscall cannot spend less per delivered event than this,
whatever its own code costs (the `fanout` bench's "server CPU per delivered event").

    python3 scripts/write_floor.py [SOCKETS] [FRAME_BYTES]

The writer runs on core 0 and the reader on core 1, like the bench's server and load; every
round writes one frame to each socket, then sleeps 10 ms so the reader is waiting again.
"""
import os
import resource
import selectors
import socket
import sys
import time

sockets = int(sys.argv[1]) if len(sys.argv) > 1 else 100
size = int(sys.argv[2]) if len(sys.argv) > 2 else 700
rounds = 1000
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(sockets)
port = listener.getsockname()[1]

reader = os.fork()
if reader == 0:
    os.sched_setaffinity(0, {1})
    selector = selectors.DefaultSelector()
    clients = []
    for _ in range(sockets):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        selector.register(c, selectors.EVENT_READ)
        clients.append(c)
    received, expected = 0, sockets * rounds * size
    while received < expected:
        for key, _ in selector.select():
            try:
                received += len(key.fileobj.recv(65536))
            except BlockingIOError:
                pass
    os._exit(0)

os.sched_setaffinity(0, {0})
conns = [listener.accept()[0] for _ in range(sockets)]
for c in conns:
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
fds = [c.fileno() for c in conns]
frame = b"x" * size
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(rounds):
    for fd in fds:
        os.write(fd, frame)
    time.sleep(0.01)
after = resource.getrusage(resource.RUSAGE_SELF)
os.waitpid(reader, 0)
writes = sockets * rounds
user = (after.ru_utime - before.ru_utime) / writes * 1e6
system = (after.ru_stime - before.ru_stime) / writes * 1e6
print(f"{sockets} sockets, {rounds} rounds of a {size} B frame: {user + system:.1f} µs CPU per "
      f"write ({system:.1f} µs in the kernel, {user:.1f} µs in Python)")
