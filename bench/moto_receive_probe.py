# Why the bench once delivered 0 of 1,000: ReceiveMessage on a moto queue
# holding ~1,000 messages, 4 receivers at once, timed. Usage: moto_receive_probe.py PORT
# (a moto_server already listening on 127.0.0.1:PORT).
import boto3, time, threading, sys
port = sys.argv[1]
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
url = sqs.create_queue(QueueName=f"probe{int(time.time())}", Attributes={"VisibilityTimeout": "360"})["QueueUrl"]
t0 = time.time()
for b in range(101):
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": '{"delivery_id":"x"}'} for i in range(10)])
print(f"sent 1010 in {time.time()-t0:.1f}s", flush=True)
got = [0]; lock = threading.Lock(); stop = time.time() + 60
def worker():
    while time.time() < stop and got[0] < 1010:
        s = time.time()
        try:
            r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        except Exception as e:
            print("error", e, flush=True); continue
        msgs = r.get("Messages", [])
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        with lock:
            got[0] += len(msgs)
        print(f"receive {len(msgs)} in {time.time()-s:.2f}s (total {got[0]})", flush=True)
ts = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print("received", got[0], "in", round(time.time()-t0, 1), "s")
