"""Init time of a Lambda binary: process start -> its first GET of the
runtime API's next-invocation route (a local stand-in of the Runtime API).
Median of N runs. Usage: init_probe.py BINARY [N]"""
import http.server, os, socket, statistics, subprocess, sys, threading, time
binary, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15
samples = []
for _ in range(n):
    hit = threading.Event()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "invocation/next" in self.path:
                hit.set()
            time.sleep(2)
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}", AWS_LAMBDA_FUNCTION_NAME="probe",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               TABLE_NAME="t", DELIVERY_QUEUE_URL="http://127.0.0.1:1/q", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", ADMIN_API_KEY="probe-admin-key-0123456789",
               AWS_EC2_METADATA_DISABLED="true", RUST_LOG="error")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = hit.wait(10)
    dt = (time.perf_counter() - t0) * 1000
    p.kill(); p.wait(); srv.shutdown()
    if ok: samples.append(dt)
print(f"{os.path.basename(binary)}: size {os.path.getsize(binary)/1048576:.1f} MiB, init median {statistics.median(samples):.1f} ms (min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})")
