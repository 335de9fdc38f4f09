#!/usr/bin/env python3
"""Measures a graycast server's memory under three attacks of issue 8 (before/after figures).

    scripts/hardening-rss.py PATH/TO/graycast frame|stuck|namespace [ROUNDS]

Each run starts the given binary on a fresh data dir and a free port, records its resident
memory (VmRSS) before, its peak (VmHWM) during and its RSS after the attack, and prints them.
- frame: 1 and then 5 parallel WebSocket frames announcing 256 MiB, sent whole by a client
  without a token to a server with --tokens.
- stuck: a subscriber that never reads, while 100 values of 1 MB change ROUNDS times (default 2) under it.
- namespace: 8 concurrent GET /v1/configs/{ns} of a 300 MiB namespace, and how long
  /healthz takes meanwhile.
"""
import base64, concurrent.futures, json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request

def mem(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024  # MiB
    return 0

def start(binary, extra):
    data = tempfile.mkdtemp()
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data + "/store", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    url = line.strip().split(" on ")[-1]
    return proc, url, data

def put(url, ns, key, value):
    body = json.dumps({"value": value}).encode()
    req = urllib.request.Request(f"{url}/v1/configs/{ns}/{key}", data=body, method="PUT",
                                 headers={"content-type": "application/json", "authorization": "Bearer s3cret"})
    urllib.request.urlopen(req).read()

def handshake(host, port, path="/v1/watch"):
    s = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    return s, answer

def frame_attack(binary):
    tokens = tempfile.mktemp()
    digest = __import__("hashlib").sha256(b"s3cret").hexdigest()
    open(tokens, "w").write(f'[[token]]\nname = "root"\nsecret_sha256 = "{digest}"\nrole = "admin"\n')
    for parallel in (1, 5):
        proc, url, _ = start(binary, ["--tokens", tokens])
        host, port = url.split("//")[1].split(":")
        before = mem(proc.pid, "VmRSS")
        def attack(_):
            s, _ = handshake(host, int(port))
            size = 256 * 1024 * 1024
            header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big") + b"\x01\x02\x03\x04"
            sent = 0
            try:
                s.sendall(header)
                chunk = b"x" * (1 << 20)
                while sent < size:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            s.close()
            return sent
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            sent = list(pool.map(attack, range(parallel)))
        print(f"frame x{parallel}: RSS before {before} MiB, peak {mem(proc.pid, 'VmHWM')} MiB, after "
              f"{mem(proc.pid, 'VmRSS')} MiB; the server took {max(sent) // (1 << 20)} MiB of a 256 MiB frame "
              f"({time.time() - started:.1f} s)")
        proc.kill()

def stuck_attack(binary):
    # The same writes without and with a subscriber that never reads: the difference is
    # what the stuck subscriber costs.
    for stuck in (False, True):
        proc, url, _ = start(binary, [])
        host, port = url.split("//")[1].split(":")
        blob = "x" * 1_000_000
        for i in range(100):
            put(url, "big", f"k{i}", {"blob": blob, "v": 0})
        before = mem(proc.pid, "VmRSS")
        if stuck:
            s, _ = handshake(host, int(port))
            sub = json.dumps({"type": "subscribe", "namespaces": ["big"]}).encode()
            s.sendall(bytes([0x81, 0x80 | len(sub)]) + b"\0\0\0\0" + sub)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for round in range(ROUNDS):
            for i in range(100):
                put(url, "big", f"k{i}", {"blob": blob, "v": round + 1})
        time.sleep(2)
        during = mem(proc.pid, "VmRSS")
        clients = json.loads(urllib.request.urlopen(f"{url}/v1/clients").read())["clients"]
        metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
        counters = {line.split()[0]: line.split()[1] for line in metrics.splitlines()
                    if line.startswith("graycast_snapshots_total")}
        print(f"stuck={stuck}: RSS after 100 values of 1 MB {before} MiB, after {ROUNDS * 100} changes more {during} MiB "
              f"(peak {mem(proc.pid, 'VmHWM')} MiB); subscribers listed: {len(clients)}; {counters}")
        proc.kill()

def namespace_attack(binary):
    proc, url, _ = start(binary, ["--max-value-bytes", "2000000"])
    blob = "x" * (1 << 20)
    for i in range(300):
        put(url, "huge", f"k{i:03}", blob)
    time.sleep(1)
    before = mem(proc.pid, "VmRSS")
    health, failed = [], []
    stop = threading.Event()
    def probe():
        while not stop.is_set():
            t = time.time()
            try:
                urllib.request.urlopen(f"{url}/healthz").read()
            except Exception as err:
                failed.append(str(err))
            health.append(time.time() - t)
            time.sleep(0.05)
    prober = threading.Thread(target=probe)
    prober.start()
    def get(_):
        return len(urllib.request.urlopen(f"{url}/v1/configs/huge").read())
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(get, range(8)))
    stop.set()
    prober.join()
    print(f"namespace: RSS before {before} MiB, peak {mem(proc.pid, 'VmHWM')} MiB; 8 GETs answered "
          f"{max(sizes) // (1 << 20)} MiB each in {time.time() - started:.1f} s; /healthz slowest "
          f"{max(health) * 1000:.0f} ms, {len(failed)} of {len(health)} probes failed {set(failed) or ''}")
    proc.kill()

binary, attack = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 2
{"frame": frame_attack, "stuck": stuck_attack, "namespace": namespace_attack}[attack](binary)
