#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE queue for a fixed time, then lets it through.

    nfqueue_delay.py QUEUE DELAY_MS

The reliability suite's network-fault scenario runs it inside the test's own network
namespace, where an iptables rule (`-j NFQUEUE --queue-num QUEUE --queue-bypass`) sends it
the packets to delay: added latency where the kernel has no netem qdisc. Packets keep their
order (one fixed delay, first in, first out). Prints `ready` once bound; runs until killed.
The kernel counts the packets it queued (`/proc/net/netfilter/nfnetlink_queue`).

Only the standard library: a netlink socket speaking nfnetlink_queue, as
libnetfilter_queue does.
"""

import collections
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1


def attr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def message(kind, flags, seq, queue, attrs, family):
    body = struct.pack("=BBH", family, 0, socket.htons(queue)) + b"".join(attrs)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0)
    return header + body


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    seq = 0

    def configure(attrs, family=socket.AF_UNSPEC):
        nonlocal seq
        seq += 1
        sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, attrs, family))
        reply = sock.recv(65536)
        _, kind = struct.unpack_from("=IH", reply)
        if kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", reply, 16)[0]
            if err:
                raise OSError(-err, os.strerror(-err))

    configure([attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
    configure([attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))], socket.AF_INET)
    configure([attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 1 << 16))], socket.AF_INET)
    print("ready", flush=True)

    held = collections.deque()  # (release time, packet id)
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, packet = held.popleft()
            verdict = attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet))
            sock.send(message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, queue, [verdict], socket.AF_UNSPEC))
        wait = max(0.0, held[0][0] - now) if held else 1.0
        if not select.select([sock], [], [], wait)[0]:
            continue
        data = sock.recv(1 << 20)
        arrived = time.monotonic()
        at = 0
        while at + 16 <= len(data):
            size, kind = struct.unpack_from("=IH", data, at)
            if size < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = at + 20  # netlink header (16) + nfgenmsg (4)
                while a + 4 <= at + size:
                    length, akind = struct.unpack_from("=HH", data, a)
                    if length < 4:
                        break
                    if akind & 0x7FFF == NFQA_PACKET_HDR:
                        packet = struct.unpack_from(">I", data, a + 4)[0]
                        held.append((arrived + delay, packet))
                    a += (length + 3) & ~3
            at += (size + 3) & ~3


if __name__ == "__main__":
    main()
